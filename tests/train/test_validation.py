"""Validation while training (`eval.every_steps`), `keep: best` by validation score, and the live W&B
run of a trial, on real trials.

The order of the validation scores is planted through the data: `knows` learns the labels of five
held-out classification tasks (in this process, as a sweep's trainable runs it) and exports its
weights; `forgets` starts from them and trains on other tasks with other labels on a Ray Train worker,
scoring the five tasks' validation instances every 2 steps and after its last step (5). It forgets
them as it trains, so its best validation score comes early, while its training loss falls: `keep:
best` must keep the early checkpoint (and the latest, which Ray Train keeps to resume from). Its
worker fails after step 3 and resumes from the step-2 checkpoint.

Both train inside their W&B run (`LiveRun`, offline, as a sweep's trainable holds it): `knows`'s run
file is read while it trains, `forgets`'s run goes on across the worker restart.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from imlsweep.sweep.spec import Tracking
from imlsweep.sweep.tracking import LiveRun, run_id
from imlsweep.train.config import TrialConfig
from imlsweep.train.trial import run_trial
from imlsweep.trial_dir import TrialDir

from wandb_files import offline_runs

KNOWN = ["task391_causal_relationship", "task828_copa_commonsense_cause_effect", "task050_multirc_answerability",
         "task1390_wscfixed_coreference", "task190_snli_classification"]  # labels OTHER's are not
OTHER = ["task363_sst2_polarity_classification", "task109_smsspamcollection_spamsmsdetection",
         "task1346_glue_cola_grammatical_correctness_classification"]
EVAL = {"tasks": KNOWN, "max_per_task": 2, "every_steps": 2, "validation": {"max_per_task": 2}, "max_new_tokens": 3,
        "batch_size": 10, "best_metric": "val/rougeL"}
SWEEP = "validation"


def config(sample_corpus, name: str, tasks: list[str], train: dict, **more) -> TrialConfig:
    return TrialConfig.model_validate({
        "name": name, "corpus": str(sample_corpus), "model": {"name": "tiny-llama"},
        "mixture": {"tasks": tasks, "encoding": {"name": "no_instruction"}, "max_length": 128, "seed": 0},
        "train": {"precision": "fp32", "zero_stage": 0, "warmup_steps": 0, "schedule": "constant",
                  "micro_batch_size": 4, **train}, **more})


def live_run(storage: Path, config: TrialConfig) -> LiveRun:
    """The trial's W&B run as the sweep's trainable opens it."""
    trial_dir = TrialDir.of(str(storage), config.name)
    return LiveRun(Tracking(mode="offline"), sweep=SWEEP, stage="s", trial_dir=trial_dir,
                   wandb_dir=Path(trial_dir.uri), labels={}, trial_config=config.model_dump(mode="json"))


def history_while_training(trial_dir: Path, step: int) -> dict[int, dict]:
    """The history W&B has written so far, waiting up to 20 s for `step`; the run must still be open."""
    deadline = time.monotonic() + 20
    while True:
        runs = offline_runs(trial_dir)
        history = runs[0].history if runs else {}
        if step in history or time.monotonic() > deadline:
            assert runs and runs[0].exit_code is None
            return history


@pytest.fixture(scope="module")
def trials(ray_local, sample_corpus, tmp_path_factory):
    storage = tmp_path_factory.mktemp("validation")
    knows_config = config(sample_corpus, "knows", KNOWN, {"lr": 1e-2, "max_steps": 24, "log_every": 2,
                                                          "export_hf": True}, eval={**EVAL, "every_steps": 8})
    reports: list[dict] = []
    seen: dict[int, dict] = {}

    def on_report(report: dict) -> None:
        reports.append(report)
        if report.get("training_finished"):  # trained and evaluated, its run still open
            seen.update(history_while_training(storage / "knows", 22))

    with live_run(storage, knows_config) as live:
        knows = run_trial(knows_config, str(storage), in_process=True, on_report=on_report)
        live.finish({"train_tokens": knows.train_tokens}, TrialDir(knows.trial_dir).task_metrics())
    forgets_config = config(sample_corpus, "forgets", OTHER,
                            {"lr": 4e-3, "max_steps": 5, "log_every": 1, "checkpoint_every": 2, "keep": "best",
                             "num_to_keep": 1, "fail_at_step": 3}, eval=EVAL, init_from=knows.hf_model_dir)
    with live_run(storage, forgets_config) as live:
        forgets = run_trial(forgets_config, str(storage))
        live.finish({"train_tokens": forgets.train_tokens}, TrialDir(forgets.trial_dir).task_metrics())
    return knows, reports, seen, forgets


def metric_lines(result) -> list[dict]:
    return [json.loads(line) for line in Path(result.trial_dir, "metrics.jsonl").read_text().splitlines()]


def test_validation_runs_at_the_configured_steps_and_reaches_tune(trials):
    knows, reports, _, forgets = trials
    lines = metric_lines(forgets)
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5]
    assert [line["step"] for line in lines if "val/rougeL" in line] == [2, 4, 5]  # every 2, and after the last
    assert {"val/combined", "val/0shot", "val/exact_match"} <= set(lines[1])
    assert lines[-1]["resumed_from_step"] == 2
    # in-process reports (what Tune receives): validation scores at steps 8, 16 and 24 only
    assert [report["step"] for report in reports] == list(range(2, 25, 2))
    assert [report["step"] for report in reports if "val/combined" in report] == [8, 16, 24]
    assert reports[-1]["training_finished"] is True and "val/rougeL" in knows.metrics


def test_keep_best_keeps_the_checkpoint_with_the_best_validation_score(trials):
    forgets = trials[3]
    lines = metric_lines(forgets)
    scores = {line["step"]: line["val/rougeL"] for line in lines if "val/rougeL" in line}
    best = max(scores, key=lambda step: (scores[step], -step))
    assert best == 2 and scores[2] > scores[5]  # the plant: it forgets what it knew
    assert lines[-1]["loss"] < lines[1]["loss"]  # while it learns what it trains on
    kept = sorted(path.name for path in Path(forgets.trial_dir).glob("checkpoint_*") if path.is_dir())
    assert kept == ["checkpoint_000002", "checkpoint_000005"]  # the best, and the latest
    assert forgets.metrics["val/rougeL"] == scores[5]  # the final report carries the last validation


def test_wandb_shows_the_curves_while_the_trial_trains(trials):
    knows, _, seen, _ = trials
    assert set(range(2, 23, 2)) <= set(seen)  # in the run file before the trial ended
    assert "loss" in seen[2] and "val/combined" in seen[8]
    (run,) = offline_runs(Path(knows.trial_dir))
    assert sorted(run.history) == list(range(2, 25, 2)) and "val/rougeL" in run.history[24]
    assert run.exit_code == 0 and run.summary["train_tokens"] == knows.train_tokens and "tasks/nrows" in run.summary


def test_wandb_keeps_one_run_without_gaps_or_repeats_across_a_restart(trials):
    forgets = trials[3]
    (run,) = offline_runs(Path(forgets.trial_dir))  # one run: the restart went on in it
    assert run.run_id == run_id(SWEEP, "forgets") and run.exit_code == 0
    lines = metric_lines(forgets)
    assert sorted(run.history) == [1, 2, 3, 4, 5]
    for line in lines:  # each step once, with the attempt's values that metrics.jsonl kept
        assert run.history[line["step"]]["loss"] == pytest.approx(line["loss"], rel=1e-4)
    assert run.history[5]["val/rougeL"] == pytest.approx(lines[-1]["val/rougeL"])
