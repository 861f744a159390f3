"""sweeps/transfer_matrix.yaml and sweeps/merge_single_task.yaml in miniature, as one sweep on the session's
Ray instance: the shipped stages with their settings, on three tasks of the bundled SuperNI sample (two
of one category, one of another), a tiny Llama trained 2 steps and scored on 2 test items per task.

The merge spec's `single_task` stage is the transfer spec's (the same trials: both specs train the
grid's tk_100 single-task models), so the sweep has one. Then the report: the transfer matrix and the
merged vs single-task vs multi-task comparison.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from imlsweep.report.build import build_report
from imlsweep.sweep.driver import run_sweep
from imlsweep.sweep.plan import plan_summary
from imlsweep.sweep.sweep import open_spec

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
ENTAILMENT = ["task1344_glue_entailment_classification", "task1388_cb_entailment"]
ANALOGY = ["task1159_bard_analogical_reasoning_containers"]
TASKS = ENTAILMENT + ANALOGY
TARGETS = [ENTAILMENT[0], ANALOGY[0]]
SMALL = {
    "model": {"name": "tiny-llama"},
    "mixture.max_length": 256,
    "train.epochs": None, "train.max_steps": 2, "train.micro_batch_size": 4, "train.global_batch_size": None,
    "train.precision": "fp32", "train.offload_optimizer": False, "train.log_every": 1, "train.lr": 1.0e-3,
    "eval.max_per_task": 2, "eval.max_new_tokens": 4, "eval.batch_size": 8,
}


def shipped(name: str) -> dict:
    return yaml.safe_load((SWEEPS / f"{name}.yaml").read_text())


def miniature_spec(folder: Path, corpus: Path) -> Path:
    transfer, merge = shipped("transfer_matrix"), shipped("merge_single_task")
    stages = {stage["name"]: stage for stage in transfer["stages"]}
    assert {key: value for key, value in stages["single_task"].items() if key != "per_task"} == {
        key: value for key, value in merge["stages"][0].items() if key != "per_task"}
    stages["single_task"]["per_task"]["tasks"] = TASKS
    stages["transfer"]["per_task"]["tasks"] = TARGETS
    for stage in merge["stages"][1:]:
        stages[stage["name"]] = stage
    stages["multi_task"]["set"].update({"mixture.tasks": TASKS, "eval.tasks": TASKS})
    for name in ("merged_uniform", "merged"):
        stages[name]["merge"] = copy.deepcopy(stages[name]["merge"])
        stages[name]["merge"]["groups"] = {"textual_entailment": ENTAILMENT, "word_analogy": ANALOGY}
    stages["merged"]["axes"]["merge.scale"] = [1.0]
    spec = {"name": "transfer_merge_miniature", "corpus": str(corpus), "base": transfer["base"],
            "stages": list(stages.values()), "resources": {"workers": 1, "cpus_per_worker": 1},
            "retention": {"hf_model": "all"}, "tracking": {"wandb": False}}
    for stage in spec["stages"]:
        stage["set"] = {**SMALL, **stage.get("set", {})}
    path = folder / "transfer_merge_miniature.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def swept(ray_local, sample_corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("transfer_merge")
    sweep = open_spec(miniature_spec(folder, sample_corpus), str(folder / "runs"))
    status = run_sweep(sweep)
    return sweep, status


def test_the_stages_expand_and_run(swept):
    sweep, status = swept
    expected = {"single_task": 3, "transfer": 4, "multi_task": 1, "merged_uniform": 2, "merged": 4}
    assert plan_summary(sweep)["trials_by_stage"] == expected
    assert status["counts"]["completed"] == sum(expected.values()), status
    transfer = sweep.trials_by_name["transfer-task1388-to-task1159"]
    assert transfer.depends_on == "single_task-task1388" and transfer.labels["source_task"] == ENTAILMENT[1]
    assert transfer.config.init_from.endswith("single_task-task1388/hf_model")
    merged = sweep.trials_by_name["merged-ties-scale=1.0-textual_entailment"]
    assert merged.merges == ["single_task-task1344", "single_task-task1388"] and merged.config.eval.tasks == ENTAILMENT
    results = pd.read_parquet(Path(sweep.uri) / "results.parquet")
    assert set(results["status"]) == {"completed"} and results["score"].notna().all()
    merged_rows = results[results["stage"].str.startswith("merged")]
    assert set(merged_rows["train_tokens"]) == {0} and set(merged_rows["merged_group"]) == {"textual_entailment",
                                                                                           "word_analogy"}


def test_a_merge_of_one_model_is_that_model(swept):
    sweep, _ = swept
    merged = load_file(sweep.trial_dir("merged_uniform-word_analogy").hf_model + "/model.safetensors")
    single = load_file(sweep.trial_dir("single_task-task1159").hf_model + "/model.safetensors")
    assert merged.keys() == single.keys() and all(torch.equal(merged[name], single[name]) for name in single)
    result = json.loads(Path(sweep.trial_dir("merged-ties-scale=1.0-textual_entailment").file("trial_result.json")).read_text())
    assert result["metrics"]["merged_models"] == 2 and result["train_tokens"] == 0


def test_the_report_draws_the_transfer_matrix_and_the_merge_comparison(swept):
    sweep, _ = swept
    paths = build_report(sweep.uri)
    out = paths.out_dir
    gains = pd.read_csv(out / "transfer_transfer_gains.csv")
    assert len(gains) == 4 and gains["gain"].notna().all() and gains["ci_low"].le(gains["ci_high"]).all()
    assert (gains["gain"] - (gains["transfer"] - gains["single_task"])).abs().max() < 1e-9
    matrix = pd.read_csv(out / "transfer_transfer_matrix.csv", index_col=0)
    assert set(matrix.index) == set(TASKS) and set(matrix.columns) == set(TARGETS)
    assert (out / "transfer_transfer.png").is_file() and (out / "transfer_transfer_by_category.pdf").is_file()
    comparisons = pd.read_csv(out / "merge_comparisons.csv")
    assert set(comparisons["versus"]) == {"single_task", "multi_task"}
    assert {"merged_uniform", "merged-task_arithmetic-scale=1.0", "merged-ties-scale=1.0"} <= set(comparisons["merged"])
    assert {"overall", "Textual Entailment", "Word Analogy"} <= set(comparisons["category"])
    per_task = pd.read_csv(out / "merge_per_task.csv")
    assert set(per_task["task_id"]) == set(TASKS) and per_task["single_task"].notna().all()
    page = paths.html.read_text()
    assert "Transfer: stage transfer" in page and "Merged models" in page
