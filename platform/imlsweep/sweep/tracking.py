"""One W&B run per trial: grouped by sweep, `job_type` = stage, swept values as top-level config keys
(so parallel-coordinates and parameter-importance views work), the training and validation curves
while the trial trains, final metrics in the summary and the per-task metrics as a table.

`LiveRun` holds the trial's run in its trainable for the whole attempt. While the trial trains it sends
the lines rank 0 appends to `metrics.jsonl` (training metrics every `train.log_every` steps, validation
scores every `eval.every_steps`), batched: at most one batch per `interval_s` (1 s), so a run stays
inside W&B's request limits whatever the step rate. Its id is a function of sweep and trial and
`resume="allow"`, so an attempt after a restart (a Tune retry, `sweep resume`) goes on in the same run
rather than starting another. A later evaluation of the trial's model (`imlsweep sweep
eval`) resumes the same run too and adds its scores beside the trial's own. Without credentials (`imlsweep.sweep.credentials`) it runs offline and
writes the run files under the trial directory (`wandb/offline-run-*/run-<id>.wandb`, one folder per
attempt, all with the run's id: `wandb sync` joins them into the one run). W&B writes them with local
file IO, so for an s3:// or gs:// sweep they go to the trial's folder in the cache of the machine that
ran the trial (`imlsweep.storage.local_folder`), to be synced from there. The key is read by wandb
itself (the environment or a netrc file) and never passed, logged or stored by this module.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Sent:
    """How far a run's history has been sent: the last step, and the keys sent for it."""

    step: int = -1
    keys: frozenset[str] = frozenset()


def rows_to_send(records: list[dict[str, Any]], sent: Sent) -> tuple[list[dict[str, float]], Sent]:
    """The metrics.jsonl lines not sent yet, as numeric rows, and how far they reach. The last step sent
    goes again when its line gained keys (a validation after the step's training metrics went out: W&B
    adds them to that step's row); earlier steps never go twice (a resumed attempt rewrites its earlier
    lines)."""
    rows = []
    for record in records:
        row = numeric_items(record)
        step = int(row.get("step", -1))
        if step > sent.step or (step == sent.step and not set(row) <= sent.keys):
            rows.append(row)
            sent = Sent(step, frozenset(row) | (sent.keys if step == sent.step else frozenset()))
    return rows, sent


class LiveRun:
    """A trial's W&B run for one attempt: `with LiveRun(...) as live:` opens it; while the block runs a
    thread sends new metrics.jsonl lines in batches; `live.finish(summary, tasks)` sends what is left,
    the summary and the task table. Leaving the block with an error sends what is left and marks the run
    failed."""

    def __init__(self, tracking: Tracking, *, sweep: str, stage: str, trial_dir: TrialDir, wandb_dir: Path,
                 labels: dict[str, Any], trial_config: dict[str, Any], interval_s: float = 1.0):
        self.tracking, self.sweep, self.stage, self.trial_dir = tracking, sweep, stage, trial_dir
        self.wandb_dir, self.interval_s = wandb_dir, interval_s
        self.config = {**labels, "stage": stage, "trial_config": trial_config}
        self.run: Any = None
        self.sent = Sent()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.send_while_training, daemon=True, name="imlsweep-wandb")

    @property
    def run_id(self) -> str:
        return run_id(self.sweep, self.trial_dir.name)

    def __enter__(self) -> LiveRun:
        self.run = open_run(self.tracking, sweep=self.sweep, stage=self.stage, trial=self.trial_dir.name,
                            wandb_dir=self.wandb_dir, config=self.config)
        self.thread.start()
        return self

    def __exit__(self, error_type: Any, error: Any, traceback: Any) -> None:
        if self.run is None:  # finished
            return
        self.stop_sending()
        # Tune stops a trial early by exiting its thread with SystemExit(0): the run ends, it did not fail
        stopped = error_type is SystemExit and getattr(error, "code", None) in (0, None)
        self.run.finish(exit_code=0 if error_type is None or stopped else 1)
        self.run = None

    def send_while_training(self) -> None:
        while not self.stop.wait(self.interval_s):  # one read of metrics.jsonl and one batch per interval
            self.send_batch()

    def send_batch(self) -> None:
        """Every line not sent yet, as one batch (from the thread, then once more after it has stopped)."""
        rows, self.sent = rows_to_send(self.trial_dir.read_metrics_log(), self.sent)
        for row in rows:
            step = row.pop("step", None)
            self.run.log(row, step=int(step) if step is not None else None)

    def stop_sending(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        self.send_batch()

    def finish(self, summary: dict[str, float], tasks: list[dict[str, Any]]) -> None:
        self.stop_sending()
        self.run.summary.update(summary)
        if tasks:
            self.run.log({"tasks": tasks_table(tasks)})
        self.run.finish()
        self.run = None


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
