"""A trial's evaluation outputs: the predictions table (one row per item) and the metrics (every level of
the aggregation), written into the trial directory (`imlsweep.trial_dir`)."""

from __future__ import annotations

from statistics import fmean
from typing import Any, Sequence

import pyarrow as pa

from imlsweep.eval.aggregate import opt_iml_rollup, sample_efficiency_rollup
from imlsweep.eval.config import EvalConfig
from imlsweep.eval.predict import RANK, task_metrics
from imlsweep.trial_dir import TrialDir

PREDICTIONS_SCHEMA = pa.schema([
    ("example_id", pa.string()), ("task_id", pa.string()), ("benchmark", pa.string()), ("category", pa.string()),
    ("level", pa.string()), ("shots", pa.int32()), ("prompt_hash", pa.string()), ("mode", pa.string()),
    ("prediction", pa.string()), ("references", pa.list_(pa.string())), ("candidates", pa.list_(pa.string())),
    ("logprob_sum", pa.list_(pa.float64())), ("logprob_per_char", pa.list_(pa.float64())),
    ("chosen_sum", pa.int32()), ("chosen_per_char", pa.int32()), ("correct", pa.bool_()),
    ("correct_sum", pa.bool_()), ("correct_per_char", pa.bool_()), ("rougeL", pa.float64()),
    ("exact_match", pa.float64()),
])


def overall_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Instance means over every item (x100), as the SuperNI scorer's overall line."""
    ranked = [row for row in rows if row["mode"] == RANK]
    return {
        "rougeL": 100.0 * fmean(row["rougeL"] for row in rows),
        "exact_match": 100.0 * fmean(row["exact_match"] for row in rows),
        "accuracy": 100.0 * fmean(row["correct"] for row in ranked) if ranked else None,
        "accuracy_per_char": 100.0 * fmean(row["correct_per_char"] for row in ranked) if ranked else None,
        "n_eval": len(rows),
        "n_tasks": len({row["task_id"] for row in rows}),
    }


def evaluation_metrics(rows: Sequence[dict[str, Any]], config: EvalConfig) -> dict[str, Any]:
    """The content of metrics.json."""
    if not rows:
        raise ValueError("no predictions to score")
    tasks = task_metrics(rows)
    rollup = opt_iml_rollup(tasks, config.group_by, config.task_groups)
    shot_settings = sorted({task["shots"] for task in tasks})
    return {
        "overall": overall_metrics(rows),
        "tasks": tasks,
        **{key: rollup[key] for key in ("per_category", "per_benchmark", "per_level", "per_shots", "combined",
                                         "columns", "merged_tasks", "group_by")},
        "sample_efficiency": {
            str(shots): sample_efficiency_rollup([t for t in tasks if t["shots"] == shots], config.largest_categories)
            for shots in shot_settings},
    }


def predictions_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist([{name: row.get(name) for name in PREDICTIONS_SCHEMA.names} for row in rows],
                                schema=PREDICTIONS_SCHEMA)


def write_evaluation(directory: TrialDir, rows: Sequence[dict[str, Any]], metrics: dict[str, Any]) -> None:
    directory.write_evaluation(predictions_table(rows), metrics)


def scalar_metrics(metrics: dict[str, Any], prefix: str = "eval") -> dict[str, float]:
    """Flat numbers for Ray Tune / W&B: <prefix>/combined, <prefix>/<shots>shot, <prefix>/<level>/<shots>shot,
    overall (prefix `eval` after training, `val` for a validation while training)."""
    flat = {f"{prefix}/combined": metrics["combined"]}
    flat.update({f"{prefix}/{shots}shot": value for shots, value in metrics["per_shots"].items()})
    for level, by_shots in metrics["per_level"].items():
        flat.update({f"{prefix}/{level}/{shots}shot": value for shots, value in by_shots.items()})
    for key in ("rougeL", "exact_match", "accuracy"):
        if metrics["overall"][key] is not None:
            flat[f"{prefix}/{key}"] = metrics["overall"][key]
    return flat
