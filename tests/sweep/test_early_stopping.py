"""ASHA on real trials: a search stage of tiny in-process trials that report their loss every step. The
first sample learns (lr 1e-2), the next ones barely move (lr 1e-7), one at a time: ASHA stops them at a
rung, each is recorded as stopped with its last metrics, results and status say so, and a resume runs
nothing again."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from imlsweep.sweep.driver import run_sweep
from imlsweep.sweep.search_space import sample_params
from imlsweep.sweep.spec import Search
from imlsweep.sweep.sweep import open_spec, open_sweep_dir

SEARCH = {"algorithm": "random", "scheduler": "asha", "num_samples": 3, "metric": "loss", "mode": "min",
          "grace_period": 2, "reduction_factor": 2, "max_reports": 8, "seed": 0,
          "space": {"train.lr": {"kind": "choice", "values": [1.0e-2, 1.0e-7]}}}


def seed_with_good_sample_first() -> int:
    """A search seed whose first sample learns and whose others do not (the draws are a function of the seed)."""
    for seed in range(100):
        search = Search(**SEARCH | {"seed": seed})
        lrs = [sample_params(search, index)["train.lr"] for index in range(3)]
        if lrs == [1.0e-2, 1.0e-7, 1.0e-7]:
            return seed
    raise AssertionError("no seed draws the wanted order")


@pytest.fixture(scope="module")
def asha_sweep(ray_local, sample_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("asha")
    spec = {
        "name": "asha", "corpus": str(sample_corpus), "storage": str(root / "sweeps"),
        "base": {"model": {"name": "tiny-llama"},
                 "mixture": {"tasks": ["task828_copa_commonsense_cause_effect"], "samples_per_task": 64,
                             "encoding": {"name": "superni_def_pos"}, "max_length": 256},
                 "train": {"lr": 1e-3, "schedule": "constant", "warmup_steps": 0, "max_steps": 8,
                           "micro_batch_size": 2, "precision": "fp32", "zero_stage": 0, "log_every": 1},
                 "eval": {"split": "test", "max_per_task": 2, "mode": "generation", "max_new_tokens": 2}},
        "resources": {"workers": 1, "cpus_per_worker": 1, "in_process": True},
        "concurrency": 1,  # one at a time: the learning sample sets every rung first
        "stages": [{"name": "lr", "search": SEARCH | {"seed": seed_with_good_sample_first()}}],
    }
    path = root / "asha.yaml"
    path.write_text(yaml.safe_dump(spec))
    sweep = open_spec(path)
    first = run_sweep(sweep)
    results = {name: (sweep.dir / name / "trial_result.json").read_text() for name in ("lr-s0000", "lr-s0001", "lr-s0002")}
    second = run_sweep(open_sweep_dir(sweep.dir))
    return sweep, first, results, second


def test_asha_stops_real_trials_and_records_them(asha_sweep):
    sweep, first, results, _ = asha_sweep
    assert first["counts"]["completed"] == 1 and first["counts"]["stopped"] == 2
    assert json.loads(results["lr-s0000"])["status"] == "completed"
    for name in ("lr-s0001", "lr-s0002"):
        stopped = json.loads(results[name])
        assert stopped["status"] == "stopped" and (sweep.dir / name / "trial_stopped").exists()
        assert stopped["labels"]["lr"] == 1.0e-7
        assert 2 <= stopped["metrics"]["step"] < 8 and stopped["metrics"]["loss"] > 0  # its last report
        assert not (sweep.dir / name / "metrics.json").exists()  # never evaluated
    table = pd.read_parquet(sweep.dir / "results.parquet")
    assert table.groupby("trial")["status"].first().to_dict() == {
        "lr-s0000": "completed", "lr-s0001": "stopped", "lr-s0002": "stopped"}


def test_resume_leaves_stopped_trials_stopped(asha_sweep):
    sweep, _, results, second = asha_sweep
    assert second["counts"]["stopped"] == 2 and second["counts"]["completed"] == 1
    for name, text in results.items():
        assert (sweep.dir / name / "trial_result.json").read_text() == text
