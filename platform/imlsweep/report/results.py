"""Reading a sweep directory's results table and what the report needs to know about it.

`results.parquet` has one row per (evaluation, trial, task, shots); the fixed columns are the sweep's
`FIXED_COLUMNS` and every other column is a swept key or a label. A report is of one evaluation: the
trials' own (`default`) or a later `sweep eval` of their models. A sweep that is still running has a
partial table (missing cells, trials not yet in), and the report is built from whatever is there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from imlsweep import storage
from imlsweep.errors import UserError
from imlsweep.eval.predict import RANK
from imlsweep.sweep.results import DEFAULT_EVAL, EVAL_COLUMN, RESULTS_FILE, evaluation_dir, read_table
from imlsweep.sweep.expand import MIXTURE_POINT_LABEL
from imlsweep.sweep.results import FIXED_COLUMNS as RESULT_COLUMNS
from imlsweep.sweep.sweep import read_plan, read_spec_data
from imlsweep.trial_dir import TrialDir

REQUIRED_COLUMNS = ("trial", "task_id", "category", "level", "shots", "score")

# Swept keys and labels that describe the sample-efficiency design (or which task a per-task trial
# trained on) rather than a mixing choice: they get no mixing table.
SAMPLE_EFFICIENCY_KEYS = ("samples_per_task", "setting", "instructions", "cell", "trained_task")
# A mixture search's trials (`mixture_point`: eps, m000, ..., proposed): its own section, not a mixing table.
MIXTURE_SEARCH_KEYS = (MIXTURE_POINT_LABEL,)
# Labels of trials built on others (transfer sources, merged groups): their own report sections.
BUILT_ON_KEYS = ("source_task", "source_trial", "merged_group", "source_models")
# A swept key whose values are replicates of the same trial: a stage's `replicates: N` (column
# `replicate`) or a swept `train.seed`. Its rows are pooled into intervals, not compared.
REPLICATE_KEYS = ("replicate", "seed")
ALL_SAMPLES = "all"


@dataclass
class SweepResults:
    """A sweep's results table (the rows of one evaluation) with its swept keys, and the spec and plan its
    run wrote (when there are)."""

    name: str
    table: pd.DataFrame
    swept_keys: list[str]
    evaluation: str = DEFAULT_EVAL
    spec: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)

    @property
    def mixing_keys(self) -> list[str]:
        """Swept keys compared as mixing choices: not the design's labels, and not a merge stage's own
        settings (`merge.scale`, ...: the merging section compares those)."""
        merge_stages = {stage.get("name") for stage in self.spec.get("stages") or [] if stage.get("merge")}
        merge_rows = self.table["stage"].isin(merge_stages) if "stage" in self.table.columns else False
        return [key for key in self.swept_keys if key not in SAMPLE_EFFICIENCY_KEYS + REPLICATE_KEYS + BUILT_ON_KEYS
                + MIXTURE_SEARCH_KEYS
                and not (merge_stages and self.table.loc[~merge_rows, key].isna().all())]

    @property
    def has_sample_efficiency(self) -> bool:
        return "samples_per_task" in self.table.columns


def load_sweep_results(sweep_dir: str | Path, evaluation: str = DEFAULT_EVAL) -> SweepResults:
    """Read the rows of `evaluation` in `results.parquet` (and `sweep.yaml` when present) from a sweep
    directory or URI."""
    sweep_dir = str(sweep_dir)
    results_path = storage.join(sweep_dir, RESULTS_FILE)
    table = read_table(sweep_dir)
    if table is None:
        raise UserError(f"{sweep_dir}: no {RESULTS_FILE} (has any trial of this sweep finished?)")
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise UserError(f"{results_path}: missing columns {', '.join(missing)}")
    if evaluation not in set(table[EVAL_COLUMN]):
        raise UserError(f"{results_path}: no evaluation {evaluation!r} (there are: "
                        f"{', '.join(sorted(set(table[EVAL_COLUMN])))}; `imlsweep sweep eval` adds one)")
    table = table[table[EVAL_COLUMN] == evaluation].reset_index(drop=True)
    swept_keys = [column for column in table.columns if column not in RESULT_COLUMNS]
    name = str(table["sweep"].iloc[0]) if "sweep" in table.columns and len(table) else PurePosixPath(sweep_dir).name
    return SweepResults(name=name, table=normalize_results(table), swept_keys=swept_keys, evaluation=evaluation,
                        spec=read_spec_data(sweep_dir) or {}, plan=read_plan(sweep_dir) or {})


def load_instances(sweep_dir: str | Path, table: pd.DataFrame, evaluation: str = DEFAULT_EVAL) -> pd.DataFrame | None:
    """The evaluated instances of the finished trials in `table`, from the `predictions.parquet` of their
    evaluation `evaluation`: trial, task_id, shots, example_id, rougeL and score (the item's primary
    metric: correct for rank classification, ROUGE-L otherwise), x100 like the results. None when no
    trial left predictions."""
    frames = []
    for trial in sorted(set(finished(table)["trial"])):
        predictions = evaluation_dir(TrialDir(storage.join(str(sweep_dir), trial)), evaluation).read_predictions()
        if predictions is None:
            continue
        items = predictions.select(["task_id", "shots", "example_id", "mode", "rougeL", "correct"]).to_pandas()
        ranked = items["mode"] == RANK
        items["rougeL"] = 100.0 * items["rougeL"].astype(float)
        items["score"] = items["rougeL"].where(~ranked, 100.0 * items["correct"].fillna(False).astype(float))
        items["shots"] = items["shots"].astype(int)
        frames.append(items.drop(columns=["mode", "correct"]).assign(trial=trial))
    return pd.concat(frames, ignore_index=True) if frames else None


def normalize_results(table: pd.DataFrame) -> pd.DataFrame:
    """Typed copy: numeric metrics as floats, shots as ints, samples_per_task as text ("100", "all")."""
    table = table.copy()
    for column in ("rougeL", "exact_match", "accuracy", "score", "n_eval", "train_examples"):
        if column in table.columns:
            table[column] = pd.to_numeric(table[column], errors="coerce")
    table["shots"] = pd.to_numeric(table["shots"], errors="coerce").fillna(0).astype(int)
    if "samples_per_task" in table.columns:
        table["samples_per_task"] = table["samples_per_task"].map(samples_label)
    if "status" not in table.columns:
        table["status"] = "completed"
    return table


def samples_label(value: Any) -> str:
    """100 -> "100", 100.0 -> "100", "all" -> "all"."""
    if isinstance(value, str):
        return value.strip().lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def finished(table: pd.DataFrame) -> pd.DataFrame:
    """Rows with a score: trials that finished and were evaluated."""
    return table[table["score"].notna() & ~table["status"].isin(["failed", "error", "running", "pending"])]


def trial_counts(results: SweepResults) -> dict[str, Any]:
    """How many trials are in, by status, and how many the spec plans (when the spec says)."""
    per_trial = results.table.groupby("trial")["status"].first()
    counts: dict[str, Any] = {"trials_in": int(per_trial.size),
                              "by_status": {str(k): int(v) for k, v in per_trial.value_counts().items()}}
    if "total_trials" in results.plan:
        counts["trials_planned"] = int(results.plan["total_trials"])
    return counts


def compute_used(results: SweepResults) -> dict[str, float | None]:
    """GPU-hours (each trial's wall time x the GPUs a trial holds), trial-hours and training tokens of
    the trials that are in, and what plan.json planned for the whole sweep (None: unknown)."""
    table = results.table.reindex(columns=list(results.table.columns) + [
        column for column in ("train_time_s", "train_tokens") if column not in results.table.columns])
    per_trial = table.groupby("trial")[["train_time_s", "train_tokens"]].first()
    resources = results.plan.get("resources") or {}
    gpus = resources.get("gpus_per_trial")
    if gpus is None and isinstance(results.spec.get("resources"), dict):
        spec_resources = results.spec["resources"]
        gpus = spec_resources.get("workers", 1) * spec_resources.get("gpus_per_worker", 0)
    seconds = pd.to_numeric(per_trial["train_time_s"], errors="coerce").sum()
    tokens = pd.to_numeric(per_trial["train_tokens"], errors="coerce")
    return {"gpu_hours": float(seconds * gpus / 3600) if gpus is not None else None,
            "trial_hours": float(seconds / 3600),
            "train_tokens": float(tokens.sum()) if tokens.notna().any() else None,
            "planned_gpu_hours": results.plan.get("gpu_hours"), "planned_train_tokens": results.plan.get("train_tokens")}
