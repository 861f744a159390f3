"""sweeps/transfer_matrix.yaml and sweeps/merge_single_task.yaml in miniature: one sweep on the bundled SuperNI
sample, run in this process on the session's Ray instance, then its report.

The miniature's stages are the shipped specs' stages, each keeping its settings, selections and cells:
the single-task stage (the same in both specs; it appears once), the transfer stage, the multi-task stage and
both merge stages. What makes them big is replaced: their task lists keep TASKS (two test tasks of one
category that both specs name and the sample holds), the merge groups keep those tasks (one category), each
swept axis keeps its last value, and the shared base becomes a tiny Llama trained for 2 steps and scored on
4 test items per task. 8 trials: 2 single-task, 2 transfers (each task to the other), 1 multi-task and 3
merged models (uniform, task arithmetic, TIES).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from imlsweep.sweep.expand import set_dotted

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
TASKS = ["task391_causal_relationship", "task828_copa_commonsense_cause_effect"]
SMALL = {
    "model": {"name": "tiny-llama"},
    "mixture.max_length": 512,
    "mixture.total_examples": 16,
    "train.warmup_steps": 0, "train.epochs": None, "train.max_steps": 2, "train.micro_batch_size": 4, "train.global_batch_size": None,
    "train.precision": "fp32", "train.offload_optimizer": False, "train.log_every": 1,
    "eval.max_per_task": 4, "eval.max_new_tokens": 4, "eval.batch_size": 8,
}
SINGLE = {"single_task-task391": "task391_causal_relationship", "single_task-task828": "task828_copa_commonsense_cause_effect"}
TRANSFERS = {"transfer-task391-to-task828": ("task391_causal_relationship", "task828_copa_commonsense_cause_effect"),
             "transfer-task828-to-task391": ("task828_copa_commonsense_cause_effect", "task391_causal_relationship")}
MERGED = {"merged_uniform": "merged_uniform-cause_effect_classification",
          "merged-task_arithmetic-scale=1.0": "merged-task_arithmetic-scale=1.0-cause_effect_classification",
          "merged-ties-scale=1.0": "merged-ties-scale=1.0-cause_effect_classification"}


def kept(tasks: list[str]) -> list[str]:
    return [task for task in tasks if task in TASKS]


def miniature_stage(stage: dict) -> dict:
    stage = copy.deepcopy(stage)
    if "per_task" in stage:
        stage["per_task"]["tasks"] = kept(stage["per_task"]["tasks"])
        assert stage["per_task"]["tasks"] == TASKS, stage["name"]
    for key in ("mixture.tasks", "eval.tasks"):
        if key in stage.get("set", {}):
            stage["set"][key] = kept(stage["set"][key])
            assert stage["set"][key] == TASKS, stage["name"]
    if "merge" in stage:
        groups = {group: kept(tasks) for group, tasks in stage["merge"]["groups"].items()}
        stage["merge"]["groups"] = {group: tasks for group, tasks in groups.items() if tasks}
        assert stage["merge"]["groups"] == {"cause_effect_classification": TASKS}
    for key, values in stage.get("axes", {}).items():
        stage["axes"][key] = values[-1:]
    return stage


def without_tasks(stage: dict) -> dict:
    stage = copy.deepcopy(stage)
    stage["per_task"].pop("tasks")
    return stage


def miniature_spec(folder: Path, corpus: Path) -> Path:
    transfer, merging = (yaml.safe_load((SWEEPS / f"{name}.yaml").read_text())
                         for name in ("transfer_matrix", "merge_single_task"))
    assert transfer["base"] == merging["base"]
    single_task, transfer_stage = transfer["stages"]
    assert without_tasks(merging["stages"][0]) == without_tasks(single_task)  # one stage stands for both
    base = copy.deepcopy(transfer["base"])
    for key, value in SMALL.items():
        set_dotted(base, key, value, "SMALL")
    spec = {"name": "transfer_merge_miniature", "corpus": str(corpus), "storage": str(folder / "runs"), "base": base,
            "stages": [miniature_stage(stage) for stage in [single_task, transfer_stage] + merging["stages"][1:]],
            "resources": {"workers": 1, "cpus_per_worker": 1}, "retention": transfer["retention"],
            "estimate": {"cpu_tokens_per_s": 2500, "eval_items_per_s": 10, "startup_s": 2},
            "tracking": {"mode": "offline"}}
    path = folder / "transfer_merge_miniature.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def swept(ray_local, sample_corpus, tmp_path_factory):
    from imlsweep.report.build import build_report
    from imlsweep.sweep.driver import run_sweep
    from imlsweep.sweep.sweep import open_spec

    folder = tmp_path_factory.mktemp("transfer_merge")
    sweep = open_spec(miniature_spec(folder, sample_corpus))
    status = run_sweep(sweep)
    return sweep, status, build_report(sweep.dir, folder / "report")


def test_every_trial_of_the_transfer_and_merge_stages_runs(swept):
    sweep, status, _ = swept
    names = set(SINGLE) | set(TRANSFERS) | {"multi_task"} | set(MERGED.values())
    assert {trial.name for trial in sweep.trials} == names
    assert status["counts"]["completed"] == len(names) == status["total_trials"]
    results = pd.read_parquet(sweep.dir / "results.parquet")
    assert set(results["status"]) == {"completed"} and results["score"].notna().all()
    for name, (source, target) in TRANSFERS.items():
        rows = results[results["trial"] == name]
        assert set(rows["task_id"]) == {target} and set(rows["source_task"]) == {source}
        assert (rows["train_tokens"] > 0).all()
        started = yaml.safe_load((sweep.dir / name / "trial.yaml").read_text())["init_from"]
        assert started == str(sweep.dir / f"single_task-{source.split('_')[0]}" / "hf_model")


def test_merged_models_are_merged_from_the_single_task_models_and_evaluated(swept):
    sweep, _, _ = swept
    results = pd.read_parquet(sweep.dir / "results.parquet")
    for name in MERGED.values():
        record = json.loads((sweep.dir / name / "trial_result.json").read_text())
        assert record["metrics"]["merged_models"] == 2 and record["metrics"]["merge_time_s"] > 0
        assert record["train_tokens"] == 0 and (sweep.dir / name / "metrics.json").is_file()
        rows = results[results["trial"] == name]
        assert set(rows["task_id"]) == set(TASKS) and set(rows["source_models"]) == {2}
        config = yaml.safe_load((sweep.dir / name / "trial.yaml").read_text())
        assert config["merge"]["models"] == [str(sweep.dir / trial / "hf_model") for trial in SINGLE]


def test_the_report_draws_the_transfer_matrix_and_compares_merged_models(swept):
    _, _, paths = swept
    tables = paths.out_dir / "tables"
    matrix = pd.read_csv(tables / "transfer_transfer_matrix.csv", index_col="source_task")
    assert sorted(matrix.index) == sorted(matrix.columns) == TASKS
    for source, target in TRANSFERS.values():
        assert math.isfinite(matrix.loc[source, target])
    gains = pd.read_csv(tables / "transfer_transfer_gains.csv")
    assert len(gains) == 2 and gains[["transfer", "single_task", "gain", "ci_low", "ci_high"]].notna().all().all()
    assert (gains["instances"] == 4).all()
    comparisons = pd.read_csv(tables / "merge_comparisons.csv")
    assert set(comparisons["merged"]) == set(MERGED) and set(comparisons["versus"]) == {"single_task", "multi_task"}
    assert comparisons[["merged_score", "versus_score", "difference", "ci_low", "ci_high"]].notna().all().all()
    per_task = pd.read_csv(tables / "merge_per_task.csv", index_col="task_id")
    assert sorted(per_task.index) == TASKS
    assert per_task[["single_task", "multi_task", *MERGED]].notna().all().all()
    page = paths.html.read_text()
    assert "Transfer: stage transfer" in page and "Merged models" in page
