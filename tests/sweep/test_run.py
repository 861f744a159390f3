"""The real thing: the 4-trial, 2-stage sweep with the Ray Train trainer, its driver killed with
SIGKILL while a trial trains (after one trial has finished and another has written a checkpoint), then
`sweep resume`: nothing finished runs twice, nothing has two results, the rest finishes, W&B offline runs
hold the swept keys and summaries (one run per trial, which the killed trial's second attempt resumes),
and the API key is nowhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from wandb_files import offline_runs


pytestmark = pytest.mark.slow  # a real sweep, in subprocesses

SPEC = Path(__file__).parent / "specs" / "two_stage.yaml"
SECRET = "imlsweep-test-secret-0123456789abcdef0123456789abcdef"
IMLSWEEP = [sys.executable, "-m", "imlsweep.cli"]


def driver_env() -> dict[str, str]:
    env = dict(os.environ, WANDB_API_KEY=SECRET, RAY_USAGE_STATS_ENABLED="0", TOKENIZERS_PARALLELISM="false",
               RAY_raylet_start_wait_time_s="120")  # a busy CI machine starts Ray slowly
    env.pop("RAY_ADDRESS", None)
    return env


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the driver and the local Ray instance it started (its own process group)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


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
        kill_group(driver)
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


def test_status_command(killed_and_resumed):
    sweep_dir = killed_and_resumed[0]
    result = subprocess.run(IMLSWEEP + ["sweep", "status", str(sweep_dir), "--json"], capture_output=True, text=True)
    status = json.loads(result.stdout)
    assert status["counts"]["completed"] == 4 and not status["driver_running"]
    assert status["by_stage"] == {"pre": {"completed": 2}, "ft": {"completed": 2}}
