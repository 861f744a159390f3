"""One W&B run per trial: grouped by sweep, `job_type` = stage, swept values as top-level config keys
(so parallel-coordinates and parameter-importance views work), final metrics in the summary and the
per-task metrics as a table.

The run is written when the trial has finished: its training curve (from `metrics.jsonl`),
summary and table go out in one batch, so a 961-run sweep makes a few requests per trial and stays
inside W&B's rate limits. A later evaluation of the trial's model (`imlsweep sweep eval`) resumes the
same run (its id is stable) and adds its scores beside the trial's own. Without credentials
(`imlsweep.sweep.credentials`) it runs offline and writes the run files under the trial directory
(`wandb/offline-run-*/run-<id>.wandb`). W&B writes them with local file IO, so for an s3:// or gs://
sweep they go to the trial's folder in the cache of the machine that ran the trial
(`imlsweep.storage.local_folder`), to be synced from there. The key is read by wandb itself (the
environment or a netrc file) and never passed, logged or stored by this module.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from imlsweep.sweep.credentials import wandb_mode
from imlsweep.sweep.spec import Tracking
from imlsweep.trial_dir import TrialDir


def run_id(sweep: str, trial: str) -> str:
    """Stable across retries and resumes, so a trial keeps one run."""
    return hashlib.sha1(f"{sweep}/{trial}".encode()).hexdigest()[:16]


def numeric_items(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten nested metrics to `a/b` keys, keeping numbers only (what a summary can chart)."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(numeric_items(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = value
    return flat


def open_run(tracking: Tracking, *, sweep: str, stage: str, trial: str, wandb_dir: Path,
             config: dict[str, Any] | None = None) -> Any:
    """The trial's W&B run, started or resumed under its stable id (files under the local `wandb_dir`)."""
    import wandb

    wandb_dir.mkdir(parents=True, exist_ok=True)
    return wandb.init(
        project=tracking.project, entity=tracking.entity, group=sweep, job_type=stage, name=trial,
        id=run_id(sweep, trial), resume="allow", dir=str(wandb_dir), mode=wandb_mode(tracking), config=config,
        settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, x_disable_meta=True),
    )


def tasks_table(tasks: list[dict[str, Any]]) -> Any:
    """The per-(task, shots) metrics as a W&B table."""
    import wandb

    columns = sorted({key for task in tasks for key in task})
    return wandb.Table(columns=columns, data=[[task.get(column) for column in columns] for task in tasks])


def log_trial_run(tracking: Tracking, *, sweep: str, stage: str, trial: str, trial_dir: TrialDir, wandb_dir: Path,
                  labels: dict[str, Any], trial_config: dict[str, Any], summary: dict[str, float],
                  tasks: list[dict[str, Any]]) -> str:
    """Write the trial's W&B run (its files under the local `wandb_dir`); returns the run id."""
    run = open_run(tracking, sweep=sweep, stage=stage, trial=trial, wandb_dir=wandb_dir,
                   config={**labels, "stage": stage, "trial_config": trial_config})
    try:
        for row in trial_dir.read_metrics_log():
            values = numeric_items(row)
            step = values.pop("step", None)
            run.log(values, step=int(step) if step is not None else None)
        run.summary.update(summary)
        if tasks:
            run.log({"tasks": tasks_table(tasks)})
    finally:
        run.finish()
    return run_id(sweep, trial)


def evaluation_key(evaluation: str, key: str) -> str:
    """`eval/combined` of evaluation `long` -> `eval_long/combined`: beside the trial's own `eval/...`."""
    return f"eval_{evaluation}/{key.removeprefix('eval/')}"


def log_evaluation(tracking: Tracking, *, sweep: str, stage: str, trial: str, wandb_dir: Path, evaluation: str,
                   summary: dict[str, float], tasks: list[dict[str, Any]]) -> None:
    """A later evaluation (`imlsweep sweep eval`) on the trial's run: its scalars in the summary as
    `eval_<name>/...` and its per-task metrics as the table `tasks_<name>`."""
    run = open_run(tracking, sweep=sweep, stage=stage, trial=trial, wandb_dir=wandb_dir)
    try:
        run.summary.update({evaluation_key(evaluation, key): value for key, value in summary.items()})
        if tasks:
            run.log({f"tasks_{evaluation}": tasks_table(tasks)})
    finally:
        run.finish()
