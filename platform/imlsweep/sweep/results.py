"""The sweep's tidy results table, `<sweep dir>/results.parquet`, written by the driver as trials finish.

One row per (evaluation, trial, evaluated task, shots). Columns:

- `sweep`, `stage`, `trial`: names (the stage is also the trial's W&B job_type).
- `eval`: which evaluation the row is from: `default` for the trial's own (its `eval` settings, right
  after training), or the name of a later `imlsweep sweep eval` of its exported model.
- `status`: `completed`; `stopped` for a trial early stopping ended (one row, no evaluation, its last
  training metrics in its result); or `error` for a trial whose retries ran out (one row, task columns null).
- `task_id`, `benchmark`, `category`, `level`, `shots`, `rougeL`, `exact_match`, `accuracy`, `score`,
  `n_eval`: from the trial's `metrics.json` (`tasks` list); `score` is the task's primary metric.
- `train_examples`, `train_time_s`, `train_tokens`: from the trial's run.
- One column per swept key, named by the key's last part (`eps`, `samples_per_task`, `lr`, ...), plus
  the labels a spec gives its stages and cells: `cell` (the cell's name), and in the shipped
  sample-efficiency specs `setting` (single_task | multi_task | prefinetune) and `instructions`
  (bool); per-task stages add `trained_task`. A column whose values mix types (e.g.
  `samples_per_task`: 100, 200, 1000, "all") is stored as text ("100", ..., "all").
"""

from __future__ import annotations

from typing import Any

import io

import pandas as pd

from imlsweep import storage
from imlsweep.sweep.expand import PlannedTrial
from imlsweep.trial_dir import TrialDir, TrialResult

RESULTS_FILE = "results.parquet"
EVAL_COLUMN = "eval"
DEFAULT_EVAL = "default"  # the trial's own evaluation
TASK_COLUMNS = ("task_id", "benchmark", "category", "level", "shots", "rougeL", "exact_match",
                "accuracy", "score", "n_eval")
RUN_COLUMNS = ("train_examples", "train_time_s", "train_tokens")
FIXED_COLUMNS = ("sweep", "stage", "trial", EVAL_COLUMN, "status") + TASK_COLUMNS + RUN_COLUMNS


def trial_rows(sweep: str, trial: PlannedTrial, trial_dir: TrialDir, result: TrialResult | None,
               evaluation: str = DEFAULT_EVAL) -> list[dict[str, Any]]:
    """Rows of one trial's evaluation `evaluation`: one per evaluated task and shots; one bare row for a
    failed trial."""
    head = {"sweep": sweep, "stage": trial.stage, "trial": trial.name, EVAL_COLUMN: evaluation,
            "status": result.status if result is not None else "error"}
    run = {key: getattr(result, key) if result is not None else None for key in RUN_COLUMNS}
    tasks = evaluation_dir(trial_dir, evaluation).task_metrics() if result is not None else []
    labels = trial.labels | (result.labels if result is not None else {})  # a search trial records its sampled values
    rows = [head | {key: task.get(key) for key in TASK_COLUMNS} | run | labels for task in tasks]
    return rows or [head | {key: None for key in TASK_COLUMNS} | run | labels]


def evaluation_dir(trial_dir: TrialDir, evaluation: str) -> TrialDir:
    """Where the evaluation `evaluation` of a trial wrote its predictions and metrics."""
    return trial_dir if evaluation == DEFAULT_EVAL else trial_dir.evaluation(evaluation)


def results_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The table of the finished (or finally failed) trials' rows (`trial_rows`)."""
    table = pd.DataFrame(rows, columns=list(FIXED_COLUMNS) if not rows else None)
    for column in table.columns:
        if column not in FIXED_COLUMNS and mixes_types(table[column]):
            table[column] = table[column].map(lambda value: None if value is None else str(value))
    return table


def mixes_types(column: pd.Series) -> bool:
    kinds = {type(value) for value in column if value is not None and value == value}
    return len(kinds - {bool}) > 1 or (bool in kinds and len(kinds) > 1)


def read_table(sweep_dir: str) -> pd.DataFrame | None:
    """The sweep's results.parquet (a table written before evaluations had names: all `default`), or None."""
    data = storage.read_bytes(storage.join(sweep_dir, RESULTS_FILE))
    if data is None:
        return None
    table = pd.read_parquet(io.BytesIO(data))
    if EVAL_COLUMN not in table.columns:
        table.insert(min(3, len(table.columns)), EVAL_COLUMN, DEFAULT_EVAL)
    return table


def other_evaluations(sweep_dir: str, evaluation: str) -> pd.DataFrame | None:
    """The rows results.parquet holds of every evaluation but `evaluation` (None: no table yet), which a
    rewrite of that evaluation's rows keeps."""
    table = read_table(sweep_dir)
    return None if table is None else table[table[EVAL_COLUMN] != evaluation]


def write_table(sweep_dir: str, rows: list[dict[str, Any]], others: pd.DataFrame | None = None) -> str:
    """results.parquet: `rows` with `others` (rows of other evaluations, `other_evaluations`), the
    trials' own evaluation first."""
    uri = storage.join(sweep_dir, RESULTS_FILE)
    table = results_table(rows)
    if others is not None and len(others):
        table = pd.concat([others, table], ignore_index=True) if rows else others
        table = table.sort_values(EVAL_COLUMN, key=lambda names: names != DEFAULT_EVAL, kind="stable")
    storage.write_bytes(uri, table.to_parquet(index=False))
    return uri
