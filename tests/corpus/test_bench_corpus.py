"""`imlsweep bench corpus`: the synthetic SuperNI checkout (its size distribution, its layout read by the
SuperNI adapter, the planted leak) and the measured run of a corpus command."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from imlsweep.bench.corpus import (MAX_INSTANCES, SUPERNI_TASKS, TEST_TASKS, Measured, TaskShapes, corpus_config,
                                   figures, measured_command, task_count, task_shapes, held_out_task_numbers,
                                   write_checkout)
from imlsweep.corpus.build import build_corpus
from imlsweep.corpus.config import CorpusConfig

TINY = TaskShapes(instances=np.array([30, 140, 25]), input_words=np.array([6.0, 12.0, 4.0]),
                  output_words=np.array([1.0, 3.0, 2.0]))


def test_full_size_has_superni_s_tasks_instances_and_test_split():
    rng = np.random.default_rng(0)
    shapes = task_shapes(task_count(1.0), rng)
    assert len(shapes.instances) == SUPERNI_TASKS
    assert 4.5e6 < shapes.instances.sum() < 5.5e6  # about 5M instances, ~3,100 a task
    assert shapes.instances.min() >= 20 and shapes.instances.max() == MAX_INSTANCES
    # a few tasks of long documents: the mean of the tasks' typical input length is well above the median
    assert np.mean(shapes.input_words) > 1.5 * np.median(shapes.input_words)
    assert len(held_out_task_numbers(SUPERNI_TASKS, rng)) == TEST_TASKS
    assert np.array_equal(task_shapes(100, np.random.default_rng(5)).instances,
                          task_shapes(100, np.random.default_rng(5)).instances)
    assert task_count(0.1) == 162 and task_count(0.0001) == 3


def test_checkout_builds_as_superni_with_its_test_tasks_and_one_planted_leak(tmp_path):
    checkout = write_checkout(tmp_path / "superni", TINY, tests={1}, seed=0)
    files = sorted((tmp_path / "superni" / "tasks").glob("*.json"))
    assert checkout["tasks"] == 3 and checkout["instances"] == 195
    assert checkout["input_mb"] == round(sum(f.stat().st_size for f in files) / 1e6, 1)
    assert checkout["largest_task_mb"] == round(max(f.stat().st_size for f in files) / 1e6, 1)
    config = CorpusConfig.model_validate(corpus_config(tmp_path / "superni", seed=0))
    corpus = build_corpus(config, tmp_path / "corpus")
    manifest = corpus.manifest.set_index("task_id")
    assert manifest["n_examples"].tolist() == [30, 140, 25]
    assert manifest["split"].tolist() == ["train", "test", "train"]
    assert manifest.loc["task0001_synthetic", "level"] == "fully_held_out"
    test_inputs = corpus.read_task("task0001_synthetic").column("input").to_pylist()
    leaking_inputs = corpus.read_task("task0002_synthetic").column("input").to_pylist()
    assert leaking_inputs[:20] == test_inputs[:20] and leaking_inputs[20:] != test_inputs[20:25]
    assert corpus.read_task("task0000_synthetic").column("input").to_pylist()[0] not in test_inputs


def test_figures_divide_the_input_by_the_build_s_wall_time():
    checkout = {"tasks": 3, "instances": 195, "input_mb": 120.0, "largest_task_mb": 30.0}
    result = figures(checkout, Measured(2.0, 350.4, ""), Measured(9.04, 900.0, ""), {"flagged": [{}]})
    assert result == {**checkout, "build_s": 2.0, "build_mb_per_s": 60.0, "leakage_s": 9.0, "peak_rss_mb": 350,
                      "leakage_peak_rss_mb": 900, "leakage_flagged_pairs": 1}


@pytest.mark.slow  # a subprocess
def test_measured_command_times_a_corpus_build_and_its_peak_memory(tmp_path):
    write_checkout(tmp_path / "superni", TINY, tests={1}, seed=0)
    config = tmp_path / "c.json"
    config.write_text(json.dumps(corpus_config(tmp_path / "superni", seed=0)))
    build = measured_command([sys.executable, "-m", "imlsweep.cli", "corpus", "build", str(config), "--out",
                              str(tmp_path / "corpus"), "--json"], "corpus build")
    assert json.loads(build.stdout)["examples"] == 195
    assert build.wall_s > 0 and 30 < build.peak_rss_mb < 2000  # an interpreter with pyarrow, not a sampling gap
    with pytest.raises(RuntimeError, match="corpus build failed"):
        measured_command([sys.executable, "-m", "imlsweep.cli", "corpus", "build", str(config), "--out",
                          str(tmp_path / "corpus"), "--json"], "corpus build")  # exists: refused
