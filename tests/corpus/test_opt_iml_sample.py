"""sweeps/corpora/opt_iml_bench_sample.yaml: every benchmark's sample, in its published layout, built into one
corpus; and every shipped OPT-IML sweep's mixtures planned on it (`imlsweep mixture explain`)."""

from __future__ import annotations

import copy
import shutil
import itertools
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from published_files import SAMPLE
from imlsweep.cli import main
from imlsweep.corpus.build import build_corpus
from imlsweep.corpus.config import load_corpus_config

REPO = Path(__file__).resolve().parents[2]
SAMPLE_CONFIG = REPO / "sweeps" / "corpora" / "opt_iml_bench_sample.yaml"
OPT_IML_SPECS = ["eps_mixing_rate", "benchmark_proportions", "task_scaling", "category_scaling", "addon_fractions",
                 "lr_batch", "demonstrations"]
VECTOR_BENCHMARKS = ["crossfit", "exmix", "flan", "superni", "promptsource", "t5", "unifiedskg"]
ADDON_TEXTS = {"pretraining": SAMPLE / "texts" / "pretraining.jsonl", "dialogue": SAMPLE / "texts" / "dialogue.jsonl"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return build_corpus(load_corpus_config(SAMPLE_CONFIG), tmp_path_factory.mktemp("opt_iml") / "sample")


def test_every_benchmark_in_one_corpus_with_categories_levels_and_caps(sample):
    manifest = sample.manifest.set_index("task_id")
    assert set(manifest["benchmark"]) == set(VECTOR_BENCHMARKS) | {"reasoning"}
    training = manifest[manifest["split"] == "train"]
    assert set(training["benchmark"]) == set(VECTOR_BENCHMARKS) | {"reasoning"}
    # categories unified across benchmarks: one Question Answering from six of them
    qa = manifest[manifest["category"] == "Question Answering"]
    assert set(qa["benchmark"]) == {"superni", "promptsource", "crossfit", "exmix", "flan", "unifiedskg"}
    assert not [category for category in manifest["category"] if category != category.strip() or category.islower()]
    assert {"Question Answering", "Summarization", "Dialogue Generation"} <= set(training["category"])
    # the three levels
    assert manifest.loc["super_glue_rte", "level"] == "fully_held_out"  # Textual Entailment
    assert manifest.loc["flan_copa_1.0.0", "level"] == "fully_held_out"  # Cause Effect Classification
    assert (manifest.loc["gsm8k", "split"], manifest.loc["gsm8k", "level"]) == ("test", "partially_supervised")
    assert (manifest.loc["samsum", "n_test"], manifest.loc["samsum", "n_validation"]) == (2, 4)  # 1 + 2 examples x 2 templates
    assert (manifest.loc["ai2_arc", "n_validation"], manifest.loc["ai2_arc", "level"]) == (2, "fully_supervised")
    # caps and what the build left out
    assert manifest.loc["flan_cosmos_qa_1.0.0", "n_examples"] == 6  # 8 rows, flan capped at 6
    stats = json.loads((sample.dir / "stats.json").read_text())
    assert stats["build"] == {"invalid": 0, "left_out": {
        "task_source 'T0' not in task_sources": ["flan_adversarial_qa_dbert_answer_the_following_q"]}}
    assert stats["benchmarks"]["promptsource"]["prompts_per_task"] > 1


def set_dotted(data: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = copy.deepcopy(value)


def trial_mixtures(spec: dict) -> list[tuple[str, dict]]:
    """(trial, mixture) of every trial of a spec: base, then the stage's set, the cell's set, one value per axis."""
    trials = []
    for stage in spec["stages"]:
        axes = stage.get("axes") or {}
        for cell in stage.get("cells") or [{"name": "base"}]:
            for values in itertools.product(*axes.values()):
                trial = copy.deepcopy(spec["base"])
                for key, value in [*stage.get("set", {}).items(), *cell.get("set", {}).items(), *zip(axes, values)]:
                    set_dotted(trial, key, value)
                for addon in trial["mixture"].get("addons", []):
                    if "texts" in addon:  # the specs' placeholders, pointed at the sample's texts
                        addon["texts"] = str(ADDON_TEXTS[addon["name"]])
                trials.append((f"{stage['name']}-{cell['name']}-{values}", trial["mixture"]))
    return trials


@pytest.mark.parametrize("name", OPT_IML_SPECS)
def test_shipped_opt_iml_sweeps_plan_on_the_sample(name, sample, tmp_path, capsys):
    spec = yaml.safe_load((REPO / "sweeps" / f"{name}.yaml").read_text())
    assert spec["corpus"] == "corpora/opt_iml_bench.yaml"
    for trial, mixture in trial_mixtures(spec):
        path = tmp_path / "mixture.yaml"
        path.write_text(yaml.safe_dump(mixture))
        assert main(["mixture", "explain", str(path), "--corpus", str(sample.dir), "--json"]) == 0, trial
        sources = json.loads(capsys.readouterr().out)
        benchmarks = Counter(source["benchmark"] for source in sources if source["addon"] is None)
        weights = dict(zip(VECTOR_BENCHMARKS, map(float, mixture["benchmark_proportions"].split("/"))))
        weighted = {b for b, weight in weights.items() if weight > 0}  # reasoning is outside the vector
        subset = mixture.get("task_subset") or mixture.get("category_subset")
        assert set(benchmarks) <= weighted if subset else set(benchmarks) == weighted, trial
        addons = {source["addon"]: source["benchmark"] for source in sources if source["addon"] is not None}
        assert addons == {addon["name"]: addon.get("benchmark", "text") for addon in mixture.get("addons", [])}, trial
        if mixture.get("category_subset"):
            assert {"Question Answering", "Summarization", "Dialogue Generation"} <= {
                source["category"] for source in sources if source["addon"] is None}, trial
        if mixture.get("task_subset"):
            assert len(sources) == min(mixture["task_subset"]["size"], sum(benchmarks.values())), trial


def test_opt_iml_bench_config_builds_as_written_once_its_paths_exist(tmp_path):
    """sweeps/corpora/opt_iml_bench.yaml with every placeholder path filled by the sample's files in the
    layout the config names; only the `hf` sources' hub names point at local copies (no hub in tests)."""
    from imlsweep.assets import SUPERNI_SAMPLE_DIR

    config = yaml.safe_load((REPO / "sweeps" / "corpora" / "opt_iml_bench.yaml").read_text())
    data = tmp_path / "data"
    copies = {"natural-instructions": SUPERNI_SAMPLE_DIR, "promptsource/promptsource/templates": "promptsource/templates",
              "promptsource-data": "promptsource/data", "flan2021_submix_original": "flan", "cot_data": "reasoning",
              "crossfit": "crossfit", "unifiedskg": "unifiedskg"}
    for target, origin in copies.items():
        shutil.copytree(SAMPLE / origin, data / target)
    shutil.copy(REPO / "sweeps" / "corpora" / "opt_iml_bench_sample_flan.yaml", data / "flan2021_tasks.yaml")
    (data / "instructions").mkdir()
    for benchmark in ("crossfit", "exmix", "t5", "unifiedskg"):
        shutil.copy(SAMPLE / benchmark / "instructions.yaml", data / "instructions" / f"{benchmark}.yaml")
    cnn = data / "promptsource-data" / "cnn_dailymail" / "3.0.0"
    cnn.mkdir(parents=True)
    shutil.copy(SAMPLE / "t5" / "cnn_dailymail" / "train.jsonl", cnn / "train.jsonl")
    templates = data / "promptsource" / "promptsource" / "templates" / "cnn_dailymail" / "3.0.0"
    templates.mkdir(parents=True)
    (templates / "templates.yaml").write_text(
        "dataset: cnn_dailymail\nsubset: 3.0.0\ntemplates:\n  x1: !Template\n    answer_choices: null\n    id: x1\n"
        "    jinja: '{{article}}\\n\\nTL;DR: ||| {{highlights}}'\n    metadata: !TemplateMetadata\n"
        "      original_task: true\n    name: tldr\n")
    local = {"web_questions": "exmix/web_questions", "quoref": "exmix/quoref", "cnn_dailymail": "t5/cnn_dailymail",
             "wmt16": "t5/wmt16_de_en"}
    for source in config["sources"]:
        for task in source.get("tasks", []) if source["format"] == "hf" else []:
            task["dataset"], task["name"] = str(SAMPLE / local[task["dataset"]]), None
    path = tmp_path / "sweeps" / "corpora" / "opt_iml_bench.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(config))
    corpus = build_corpus(load_corpus_config(path), tmp_path / "out")
    manifest = corpus.manifest.set_index("task_id")
    assert set(manifest["benchmark"]) == set(VECTOR_BENCHMARKS) | {"reasoning"}
    assert manifest.loc["ps_cnn_dailymail", "n_test"] == 6  # supervised_test_size 1000 > its 6 examples
    assert manifest.loc["super_glue_rte", "level"] == "fully_held_out"
