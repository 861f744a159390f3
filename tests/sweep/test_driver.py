"""The Tune driver against a trivial trial runner (no training): stages, dependencies, retries,
results, W&B offline runs, status and resume. The real trainer runs in test_run.py."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import ray.cloudpickle
import yaml
from wandb_files import offline_runs

from imlsweep.sweep.driver import run_sweep
from imlsweep.sweep.state import sweep_status
from imlsweep.sweep.sweep import open_spec, open_sweep_dir

SPEC = Path(__file__).parent / "specs" / "two_stage.yaml"


@dataclass
class FakeResult:
    name: str
    trial_dir: str
    metrics: dict
    checkpoint: str | None
    hf_model_dir: str | None
    train_time_s: float
    train_tokens: int
    train_examples: int


def fake_runner(config, storage_path, *, callbacks=()):
    """Writes what a trial writes; fails once where `fail_once` marks it, always where `fail_always` does;
    where `wait_for` names another trial, trains until that trial has started (fails if it never does)."""
    trial_dir = Path(storage_path) / config.name
    trial_dir.mkdir(parents=True, exist_ok=True)
    (Path(storage_path) / f"started-{config.name}").touch()
    wait_for = Path(storage_path) / f"wait_for-{config.name}"
    if wait_for.exists():
        other = Path(storage_path) / f"started-{wait_for.read_text()}"
        deadline = time.monotonic() + 120
        while not other.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{config.name}: {wait_for.read_text()} never started while it trained")
            time.sleep(0.1)
    runs = trial_dir / "runs.txt"
    runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
    if (Path(storage_path) / f"fail_always-{config.name}").exists():
        raise RuntimeError(f"injected failure in {config.name}")
    marker = Path(storage_path) / f"fail_once-{config.name}"
    if marker.exists():
        marker.unlink()
        raise RuntimeError(f"injected one-off failure in {config.name}")
    if config.init_from is not None:
        assert Path(config.init_from).is_dir(), config.init_from
    (trial_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.0}\n')
    (trial_dir / "checkpoint_000002").mkdir(exist_ok=True)
    if config.train.export_hf:
        (trial_dir / "hf_model").mkdir(exist_ok=True)
    tasks = [{"task_id": task, "shots": 0, "benchmark": "superni", "category": "c", "level": "fully_held_out",
              "rougeL": 50.0, "exact_match": 10.0, "accuracy": None, "score": 50.0, "n_eval": 2}
             for task in (config.eval.tasks or config.mixture.tasks)]
    (trial_dir / "metrics.json").write_text(json.dumps({"overall": {"score": 50.0}, "tasks": tasks}))
    return FakeResult(config.name, str(trial_dir), {"loss": 2.0, "eval": {"score": 50.0}}, None,
                      str(trial_dir / "hf_model") if config.train.export_hf else None, 1.5, 100, 8)


# Ray workers cannot import this test module: ship its functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def spec_copy(tmp_path: Path, corpus: Path, **changes) -> Path:
    """The test spec with a built corpus and a temporary storage folder."""
    data = yaml.safe_load(SPEC.read_text())
    data.update(corpus=str(corpus), storage=str(tmp_path / "sweeps"), **changes)
    path = tmp_path / "two_stage.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def fake_sweep(ray_local, sample_corpus, tmp_path_factory):
    """Run 1: pre-inst fails once (Tune retries it), pre-plain always fails, so ft-plain waits.
    Run 2 (resume, the failure removed): the rest runs, nothing finished runs again. The search stage
    samples with Optuna under an ASHA scheduler."""
    search = {"name": "search", "set": {"mixture.tasks": ["task828_copa_commonsense_cause_effect"]},
              "search": {"algorithm": "optuna", "scheduler": "asha", "num_samples": 2, "metric": "loss", "mode": "min",
                         "seed": 3,
                         "space": {"train.lr": {"kind": "loguniform", "low": 1e-4, "high": 1e-2}}}}
    data = yaml.safe_load(SPEC.read_text())
    sweep = open_spec(spec_copy(tmp_path_factory.mktemp("fake"), sample_corpus, stages=data["stages"] + [search]))
    sweep.dir.mkdir(parents=True)
    (sweep.dir / "fail_once-pre-inst").touch()
    (sweep.dir / "fail_always-pre-plain").touch()
    # pre-inst trains until a trial of the last stage, which depends on nothing, has started
    (sweep.dir / "wait_for-pre-inst").write_text("search-s0000")
    first = run_sweep(sweep, runner=fake_runner)
    first_results = pd.read_parquet(sweep.dir / "results.parquet")
    first_finished = {name: (sweep.dir / name / "trial_result.json").read_text()
                      for name in ("pre-inst", "ft-inst-samples_per_task=16")}
    (sweep.dir / "fail_always-pre-plain").unlink()
    second = run_sweep(open_sweep_dir(sweep.dir), runner=fake_runner)
    return sweep, first, first_results, first_finished, second


def test_first_run_retries_records_errors_and_waits(fake_sweep):
    sweep, first, results, _, _ = fake_sweep
    assert first["counts"] == {"completed": 4, "stopped": 0, "running": 0, "interrupted": 0, "error": 1, "pending": 1}
    assert first["by_stage"] == {"pre": {"completed": 1, "error": 1}, "ft": {"completed": 1, "pending": 1},
                                 "search": {"completed": 2}}
    (failing,) = first["failing"]
    assert failing["trial"] == "pre-plain"
    assert failing["errors"] == ["RuntimeError: injected failure in pre-plain"] * 2  # trial_retries 1: two attempts
    assert (sweep.dir / "pre-inst" / "runs.txt").read_text() == "xx"  # failed once, retried by Tune
    by_trial = results.groupby("trial")["status"].first().to_dict()
    assert by_trial == {"pre-inst": "completed", "pre-plain": "error", "ft-inst-samples_per_task=16": "completed",
                        "search-s0000": "completed", "search-s0001": "completed"}


def test_independent_trials_start_while_a_dependency_trains(fake_sweep):
    """One Tune run for every stage: a trial of the last stage started while the first stage's pre-inst
    trained (pre-inst waits for it and completed), and ft-inst, which starts from pre-inst, only after."""
    sweep, first, *_ = fake_sweep
    assert (sweep.dir / "pre-inst" / "trial_result.json").exists()
    started = {name: (sweep.dir / f"started-{name}").stat().st_mtime_ns
               for name in ("pre-inst", "search-s0000", "ft-inst-samples_per_task=16")}
    finished_pre = (sweep.dir / "pre-inst" / "trial_result.json").stat().st_mtime_ns
    assert started["search-s0000"] <= finished_pre <= started["ft-inst-samples_per_task=16"]


def test_resume_runs_the_rest_once(fake_sweep):
    sweep, _, _, first_finished, second = fake_sweep
    assert second["counts"]["completed"] == 6 and second["total_trials"] == 6
    for name, text in first_finished.items():
        assert (sweep.dir / name / "trial_result.json").read_text() == text
        assert (sweep.dir / name / "runs.txt").read_text() == ("xx" if name == "pre-inst" else "x")
    assert (sweep.dir / "pre-plain" / "runs.txt").read_text() == "xxx"
    assert sweep_status(open_sweep_dir(sweep.dir))["counts"]["completed"] == 6


def test_results_table(fake_sweep):
    sweep = fake_sweep[0]
    table = pd.read_parquet(sweep.dir / "results.parquet")
    for column in ("sweep", "stage", "trial", "status", "task_id", "category", "level", "shots", "rougeL",
                   "score", "n_eval", "train_examples", "train_time_s", "train_tokens",
                   "cell", "instructions", "setting", "samples_per_task"):
        assert column in table.columns, column
    assert len(table) == 2 + 2 + 1 + 1 + 2  # pre trials evaluate 2 tasks, ft and search trials 1
    lrs = table.loc[table["stage"] == "search", "lr"]
    assert len(set(lrs)) == 2 and all(1e-4 <= lr <= 1e-2 for lr in lrs)  # sampled values are columns
    ft = table[table["stage"] == "ft"]
    assert set(ft["samples_per_task"]) == {16} and set(ft["setting"]) == {"single_task"}
    assert set(table["status"]) == {"completed"}
    assert table.loc[table["trial"] == "pre-plain", "instructions"].tolist() == [False, False]


def test_retention_and_dependencies(fake_sweep):
    sweep = fake_sweep[0]
    for trial in [t for t in sweep.trials if t.stage != "search"]:
        trial_dir = sweep.dir / trial.name
        assert not list(trial_dir.glob("checkpoint_*")), "delete_when_done removes checkpoints"
        assert (trial_dir / "hf_model").is_dir() == (trial.stage == "pre")  # only what a later stage needs
    ft_inst = sweep.trials_by_name["ft-inst-samples_per_task=16"]
    assert ft_inst.config.init_from == str(sweep.dir / "pre-inst" / "hf_model")


def test_wandb_offline_runs(fake_sweep):
    sweep = fake_sweep[0]
    runs = {run.name: run for run in offline_runs(sweep.dir)}
    planned = {trial.name for trial in sweep.trials if trial.stage != "search"}
    assert set(runs) == planned | {"search-s0000", "search-s0001"}  # one run per finished trial, none twice
    assert runs["search-s0001"].config["lr"] == runs["search-s0001"].config["trial_config"]["train"]["lr"]
    run = runs["ft-inst-samples_per_task=16"]
    assert (run.group, run.job_type) == ("two_stage", "ft")
    assert run.config["samples_per_task"] == 16 and run.config["cell"] == "inst"
    assert run.config["instructions"] is True and run.config["setting"] == "single_task"
    assert run.summary["train_time_s"] == 1.5 and run.summary["eval/score"] == 50.0
    assert "tasks/nrows" in run.summary and "loss" in run.history_keys
