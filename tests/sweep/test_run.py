"""The real thing: the 4-trial, 2-stage sweep with the Ray Train trainer, its driver killed with
SIGKILL while a trial trains (after one trial has finished and another has written a checkpoint), then
`sweep resume`: nothing finished runs twice, nothing has two results, the rest finishes, W&B offline runs
hold the swept keys and summaries (one run per trial, which the killed trial's second attempt resumes),
and the API key is nowhere. Then `sweep eval` scores the finished sweep's kept models again with other
eval settings, without training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from processes import kill_session
from wandb_files import offline_runs

from imlsweep.cli import main


pytestmark = pytest.mark.slow  # a real sweep, in subprocesses

SPEC = Path(__file__).parent / "specs" / "two_stage.yaml"
SECRET = "imlsweep-test-secret-0123456789abcdef0123456789abcdef"
IMLSWEEP = [sys.executable, "-m", "imlsweep.cli"]


def driver_env() -> dict[str, str]:
    env = dict(os.environ, WANDB_API_KEY=SECRET, RAY_USAGE_STATS_ENABLED="0", TOKENIZERS_PARALLELISM="false",
               RAY_raylet_start_wait_time_s="120")  # a busy CI machine starts Ray slowly
    env.pop("RAY_ADDRESS", None)
    return env


def wait_for(predicate, timeout_s: float, process: subprocess.Popen) -> None:
    deadline = time.time() + timeout_s
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"driver exited early with {process.returncode}")
        if time.time() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.5)


def training_with_checkpoint(sweep_dir: Path) -> list[str]:
    """Trials that have written a checkpoint and have no result yet: they are training."""
    return [trial.name for trial in sweep_dir.iterdir()
            if trial.is_dir() and any(trial.glob("checkpoint_*")) and not (trial / "trial_result.json").exists()]


@pytest.fixture(scope="module")
def killed_and_resumed(sample_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    data = yaml.safe_load(SPEC.read_text())
    data.update(corpus=str(sample_corpus), storage=str(root / "sweeps"), tracking={"mode": "offline"})
    data["base"]["train"].update(max_steps=4, checkpoint_every=1)  # long enough to be killed mid-trial
    spec = root / "two_stage.yaml"
    spec.write_text(yaml.safe_dump(data))
    sweep_dir = root / "sweeps" / "two_stage"
    log = open(root / "driver.log", "w")
    driver = subprocess.Popen(IMLSWEEP + ["sweep", "run", str(spec)], env=driver_env(), stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: any(sweep_dir.glob("*/trial_result.json")) and training_with_checkpoint(sweep_dir), 240, driver)
    finally:
        kill_session(driver)
    finished = {path.parent.name: path.read_text() for path in sweep_dir.glob("*/trial_result.json")}
    assert training_with_checkpoint(sweep_dir), "the driver was killed while a trial trained"
    resumed = subprocess.run(IMLSWEEP + ["sweep", "resume", str(sweep_dir), "--json"], env=driver_env(),
                             capture_output=True, text=True, timeout=240, start_new_session=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return sweep_dir, finished, json.loads(resumed.stdout), resumed.stderr


def test_resume_after_kill_runs_nothing_twice(killed_and_resumed):
    sweep_dir, finished, status, stderr = killed_and_resumed
    assert finished, "a trial finished before the kill"
    assert status["counts"]["completed"] == 4 == status["total_trials"]
    for name, text in finished.items():
        assert (sweep_dir / name / "trial_result.json").read_text() == text  # not run again
    run_ids: dict[str, set[str]] = {}
    for run in offline_runs(sweep_dir):  # one file per attempt: the killed trial's attempts share its run
        run_ids.setdefault(run.name, set()).add(run.run_id)
    assert sorted(run_ids) == sorted(p.parent.name for p in sweep_dir.glob("*/trial_result.json"))
    assert all(len(ids) == 1 for ids in run_ids.values())
    assert "[sweep] completed ft-" in stderr


def test_real_trials_results_and_stages(killed_and_resumed):
    sweep_dir = killed_and_resumed[0]
    table = pd.read_parquet(sweep_dir / "results.parquet")
    assert set(table["trial"]) == {"pre-inst", "pre-plain", "ft-inst-samples_per_task=16", "ft-plain-samples_per_task=16"}
    assert set(table["status"]) == {"completed"}
    assert table["score"].notna().all() and (table["train_tokens"] > 0).all()
    assert set(table.loc[table["stage"] == "ft", "task_id"]) == {"task828_copa_commonsense_cause_effect"}
    trial_yaml = yaml.safe_load((sweep_dir / "ft-inst-samples_per_task=16" / "trial.yaml").read_text())
    assert trial_yaml["init_from"] == str(sweep_dir / "pre-inst" / "hf_model")
    assert (sweep_dir / "pre-inst" / "hf_model").is_dir() and not (sweep_dir / "ft-inst-samples_per_task=16" / "hf_model").exists()


def test_wandb_runs_hold_swept_keys_and_summary(killed_and_resumed):
    runs = {run.name: run for run in offline_runs(killed_and_resumed[0])}
    run = runs["ft-plain-samples_per_task=16"]
    assert (run.group, run.job_type) == ("two_stage", "ft")
    assert run.config["samples_per_task"] == 16 and run.config["instructions"] is False
    assert run.config["cell"] == "plain" and run.config["setting"] == "single_task"
    assert run.summary["train_tokens"] > 0 and "tasks/nrows" in run.summary


def test_api_key_never_written(killed_and_resumed):
    sweep_dir = killed_and_resumed[0]
    for path in sweep_dir.parent.parent.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_status_command(killed_and_resumed, capsys):
    sweep_dir = killed_and_resumed[0]
    assert main(["sweep", "status", str(sweep_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"]["completed"] == 4 and not status["driver_running"]
    assert status["by_stage"] == {"pre": {"completed": 2}, "ft": {"completed": 2}}


TASKS = ["task1159_bard_analogical_reasoning_containers", "task828_copa_commonsense_cause_effect"]
KEPT = {"pre-inst", "pre-plain"}  # the trials later ones start from: retention.hf_model `dependencies` keeps them


def sweep_copy(killed_and_resumed, tmp_path: Path) -> Path:
    sweep_dir = tmp_path / "two_stage"
    shutil.copytree(killed_and_resumed[0], sweep_dir)
    return sweep_dir


def test_sweep_eval_scores_the_kept_models_again_without_training(killed_and_resumed, tmp_path, ray_local, capsys):
    sweep_dir = sweep_copy(killed_and_resumed, tmp_path)
    eval_file = tmp_path / "two_shot.yaml"  # other tasks, shots and generation length than the trials' own
    eval_file.write_text(yaml.safe_dump({"tasks": TASKS, "shots": [0, 2], "max_per_task": 3, "max_new_tokens": 8}))
    before = {path: path.read_bytes() for path in sweep_dir.rglob("*")
              if path.is_file() and "wandb" not in path.parts and path.name != "results.parquet"}
    table_before = pd.read_parquet(sweep_dir / "results.parquet")

    assert main(["sweep", "eval", str(sweep_dir), str(eval_file), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["eval"] == "two_shot" and set(printed["trials"]) == KEPT
    assert sorted(printed["without_model"]) == ["ft-inst-samples_per_task=16", "ft-plain-samples_per_task=16"]

    for path, data in before.items():  # no training: every file of the trials as it was, none added but evals/
        assert path.read_bytes() == data, path
    added = {path.relative_to(sweep_dir) for path in sweep_dir.rglob("*") if path.is_file() and path not in before
             and "wandb" not in path.parts and path.name != "results.parquet"}
    assert added == {Path(trial, "evals", "two_shot", name) for trial in KEPT
                     for name in ("predictions.parquet", "metrics.json")}

    table = pd.read_parquet(sweep_dir / "results.parquet")
    pd.testing.assert_frame_equal(table[table["eval"] == "default"], table_before)  # the trials' own rows as they were
    rows = table[table["eval"] == "two_shot"]
    assert set(rows["trial"]) == KEPT and set(rows["status"]) == {"completed"}
    assert len(rows) == len(KEPT) * len(TASKS) * 2 and set(rows["shots"]) == {0, 2}
    assert set(rows["task_id"]) == set(TASKS) and (rows["n_eval"] == 3).all() and rows["score"].notna().all()
    assert set(rows.loc[rows["trial"] == "pre-plain", "instructions"]) == {False}  # the trial's labels

    predictions = pd.read_parquet(sweep_dir / "pre-inst" / "evals" / "two_shot" / "predictions.parquet")
    assert len(predictions) == 12 and set(predictions["shots"]) == {0, 2}

    result = json.loads((sweep_dir / "pre-inst" / "trial_result.json").read_text())
    runs = [run for run in offline_runs(sweep_dir / "pre-inst") if run.run_id == result["wandb_run_id"]]
    assert len(runs) >= 2  # the trial's run (one folder per attempt), resumed by the evaluation
    assert "eval_two_shot/combined" in runs[-1].summary and "tasks_two_shot/nrows" in runs[-1].summary

    assert main(["report", str(sweep_dir), "--eval", "two_shot"]) == 0
    page = (sweep_dir / "report-two_shot" / "report.html").read_text()
    assert "Evaluation <b>two_shot</b>" in page and "ft-inst" not in page


def test_sweep_eval_bad_input_fails_before_ray(killed_and_resumed, tmp_path, capsys, ray_sessions):
    sweep_dir = sweep_copy(killed_and_resumed, tmp_path)
    eval_file = tmp_path / "long.yaml"

    def fails(settings: dict, *message: str, options: tuple[str, ...] = ()) -> None:
        eval_file.write_text(yaml.safe_dump(settings))
        assert main(["sweep", "eval", str(sweep_dir), str(eval_file), *options]) == 2
        error = capsys.readouterr().err
        for part in message:
            assert part in error, error

    fails({"max_new_token": 64}, str(eval_file), "max_new_token")
    fails({"tasks": ["task828_copa_commonsense_cause_efect"]}, f"{eval_file}: trial pre-inst (and 1 more trials): "
          "eval.tasks: 'task828_copa_commonsense_cause_efect' is not a task of the corpus; did you mean")
    fails({"max_new_tokens": 64}, "name 'default'", options=("--name", "default"))
    for trial in KEPT:
        shutil.rmtree(sweep_dir / trial / "hf_model")
    fails({"max_new_tokens": 64}, f"{sweep_dir}: none of its 4 completed trials kept a model",
          "retention: {hf_model: all}")
    assert not ray_sessions
    assert not list(sweep_dir.glob("*/evals"))
