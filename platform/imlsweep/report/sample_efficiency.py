"""Sample-efficiency curves: score against training samples per task, per setting.

Rows trained with instructions form one curve per setting (single-task, multi-task); rows without
instructions are baselines, drawn as marked points. "all" samples per task is placed on the x-axis
at the mean training-pool size of the tasks (from `train_examples` of the "all" rows), so it sits
where the data actually is rather than at an arbitrary tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from imlsweep.report.results import ALL_SAMPLES, finished

OTHERS = "Others"


POWER_LAW_PARAMETERS = 3


@dataclass(frozen=True)
class PowerLawFit:
    """score = a - b * n^(-c), fitted by least squares. With no more distinct sizes than the three
    parameters the curve passes through every point whatever the truth: not identifiable."""

    a: float
    b: float
    c: float
    rmse: float
    n_points: int

    @property
    def identifiable(self) -> bool:
        return self.n_points > POWER_LAW_PARAMETERS

    def predict(self, n: np.ndarray | float) -> np.ndarray | float:
        return self.a - self.b * np.power(n, -self.c)

    def samples_for(self, target: float) -> float | None:
        """n at which the fitted curve reaches `target` (None: never, the asymptote a is below it)."""
        if not self.identifiable or self.b <= 0 or self.c <= 0 or target >= self.a:
            return None
        return float((self.b / (self.a - target)) ** (1 / self.c))


def all_samples_position(table: pd.DataFrame) -> float | None:
    """Where "all" sits on the samples axis: the mean per-task training pool of the "all" rows.

    `train_examples` of a single-task row is its task's pool; a multi-task row's value covers every
    task of the trial, so single-task rows are preferred and multi-task values are divided by the
    number of tasks the trial was evaluated on."""
    rows = table[(table["samples_per_task"] == ALL_SAMPLES) & table["train_examples"].notna()]
    if rows.empty:
        return None
    if "setting" in rows.columns and (rows["setting"] == "single_task").any():
        per_task = rows[rows["setting"] == "single_task"].groupby("task_id")["train_examples"].mean()
        return float(per_task.mean())
    per_trial = rows.groupby("trial").agg(examples=("train_examples", "max"), tasks=("task_id", "nunique"))
    return float((per_trial["examples"] / per_trial["tasks"]).mean())


def samples_axis(table: pd.DataFrame) -> pd.Series:
    """Numeric samples per task for each row ("all" at `all_samples_position`, NaN if unknown)."""
    numeric = pd.to_numeric(table["samples_per_task"], errors="coerce")
    all_position = all_samples_position(table)
    if all_position is not None:
        largest = numeric.max()
        if not math.isnan(largest):
            all_position = max(all_position, float(largest))  # "all" is never left of a subsample
        numeric = numeric.where(table["samples_per_task"] != ALL_SAMPLES, all_position)
    return numeric


def club_small_categories(categories: pd.Series, tasks: pd.Series, keep: int = 6) -> pd.Series:
    """Keep the `keep` categories with the most tasks; the rest become "Others" (as in the study)."""
    task_counts = pd.DataFrame({"category": categories, "task_id": tasks}).drop_duplicates()
    ranked = task_counts.groupby("category").size().sort_values(ascending=False, kind="stable")
    kept = set(ranked.index[:keep])
    return categories.where(categories.isin(kept), OTHERS)


def efficiency_rows(table: pd.DataFrame, group: str | None = None, metric: str = "rougeL") -> pd.DataFrame:
    """The finished rows at the smallest shot setting, with their point: kind, series, n, value, weight."""
    rows = finished(table).copy()
    rows = rows[rows["shots"] == rows["shots"].min()] if len(rows) else rows
    rows["value"] = rows[metric].fillna(rows["score"]) if metric in rows.columns else rows["score"]
    rows["n"] = samples_axis(rows) if len(rows) else pd.Series(dtype=float)
    rows["weight"] = rows["n_eval"].fillna(1).clip(lower=1) if "n_eval" in rows.columns else 1.0
    rows["kind"], rows["series"] = series_of(rows)
    rows["kind"] = rows["kind"].where(~(rows["n"] <= 0), "reference")
    return rows.dropna(subset=["n", "value"])


def point_keys(group: str | None) -> list[str]:
    return ["kind", "series", "samples_per_task", "n"] + ([group] if group else [])


def efficiency_points(table: pd.DataFrame, group: str | None = None, metric: str = "rougeL") -> pd.DataFrame:
    """One row per (kind, series, samples[, group]) with the instance-weighted mean metric.

    kind is "curve" (trained with instructions), "baseline" (without), or "reference" (no samples of
    the evaluated tasks, e.g. a pre-finetuned model scored zero-shot: it has no place on a log axis);
    series is the setting ("multi_task", or "multi_task baseline").
    Columns: kind, series, samples, n, score, n_tasks[, group]."""
    rows = efficiency_rows(table, group, metric)
    keys = point_keys(group)
    if rows.empty:
        return pd.DataFrame(columns=keys + ["score", "n_tasks"]).rename(columns={"samples_per_task": "samples"})
    rows["weighted"] = rows["value"] * rows["weight"]
    summary = rows.groupby(keys, sort=True, dropna=False).agg(
        weighted=("weighted", "sum"), weight=("weight", "sum"), n_tasks=("task_id", "nunique"))
    summary["score"] = summary["weighted"] / summary["weight"]
    summary = summary.drop(columns=["weighted", "weight"]).reset_index()
    return summary.rename(columns={"samples_per_task": "samples"}).sort_values(["kind", "series", "n"])


def series_of(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    setting = rows["setting"].astype(str) if "setting" in rows.columns else pd.Series("all tasks", index=rows.index)
    if "instructions" not in rows.columns:
        return pd.Series("curve", index=rows.index), setting
    instructed = rows["instructions"].astype(bool)
    kind = instructed.map({True: "curve", False: "baseline"})
    return kind, setting.where(instructed, setting + " baseline")


def best_supervised_baseline(points: pd.DataFrame) -> pd.Series | None:
    """The best baseline trained on all samples (or, if none has finished, on the most samples)."""
    baselines = points[points["kind"] == "baseline"]
    if baselines.empty:
        return None
    full = baselines[baselines["samples"] == ALL_SAMPLES]
    if full.empty:
        full = baselines[baselines["n"] == baselines["n"].max()]
    return full.loc[full["score"].idxmax()]


def samples_to_reach(n: np.ndarray, score: np.ndarray, target: float) -> float | None:
    """The smallest n at which the curve reaches `target`, interpolated linearly in log n.

    Returns n[0] when the first point already reaches it, None when no point does."""
    if len(n) == 0:
        return None
    reached = float(samples_to_reach_draws(n, np.asarray(score, float)[:, None], np.array([target]))[0])
    return None if np.isnan(reached) else reached


def samples_to_reach_draws(n: np.ndarray, scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """`samples_to_reach` for many draws at once: scores [points x draws], targets [draws]; NaN where
    a draw's curve never reaches its target."""
    order = np.argsort(n)
    n, scores = np.asarray(n, float)[order], np.asarray(scores, float)[order]
    log_n = np.log(n)
    reached = scores >= targets[None, :]
    first = np.argmax(reached, axis=0)
    previous = np.maximum(first - 1, 0)
    columns = np.arange(scores.shape[1])
    below, above = scores[previous, columns], scores[first, columns]
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(first > 0, (targets - below) / (above - below), 0.0)
    result = np.where(first > 0, np.exp(log_n[previous] + fraction * (log_n[first] - log_n[previous])), n[first])
    return np.where(reached.any(axis=0), result, np.nan)


def data_needed_to_match(points: pd.DataFrame) -> pd.DataFrame:
    """For each curve and each baseline: samples per task the curve needs to reach the baseline."""
    curves = points[points["kind"] == "curve"]
    baselines = points[points["kind"] == "baseline"]
    records = []
    for series, curve in curves.groupby("series", sort=True):
        for _, baseline in baselines.iterrows():
            needed = samples_to_reach(curve["n"].to_numpy(), curve["score"].to_numpy(), baseline["score"])
            records.append({
                "series": series, "baseline": f"{baseline['series']} @ {baseline['samples']}",
                "baseline_score": float(baseline["score"]), "samples_needed": needed,
                "at_smallest": needed is not None and needed <= curve["n"].min(),
                "baseline_samples": float(baseline["n"]),
            })
    return pd.DataFrame(records, columns=["series", "baseline", "baseline_score", "samples_needed",
                                          "at_smallest", "baseline_samples"])


def fit_power_law(n: np.ndarray, score: np.ndarray) -> PowerLawFit | None:
    """Least-squares fit of score = a - b * n^(-c); None with fewer than three distinct n.

    For a fixed c the model is linear in (a, b), so c is searched (on a log grid, then refined) and
    (a, b) solved exactly for each c: deterministic, no starting guess."""
    n, score = np.asarray(n, float), np.asarray(score, float)
    keep = np.isfinite(n) & np.isfinite(score) & (n > 0)
    n, score = n[keep], score[keep]
    if len(np.unique(n)) < 3:
        return None

    def solve(log_c: float) -> tuple[float, float, float]:
        x = np.power(n, -np.exp(log_c))
        design = np.column_stack([np.ones_like(x), -x])
        (a, b), *_ = np.linalg.lstsq(design, score, rcond=None)
        return float(a), float(b), float(np.sum((design @ np.array([a, b]) - score) ** 2))

    grid = np.linspace(np.log(1e-3), np.log(5.0), 200)
    errors = [solve(log_c)[2] for log_c in grid]
    best = int(np.argmin(errors))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    refined = minimize_scalar(lambda log_c: solve(log_c)[2], bounds=(low, high), method="bounded",
                              options={"xatol": 1e-10})
    log_c = refined.x if refined.fun <= errors[best] else grid[best]
    a, b, sse = solve(log_c)
    return PowerLawFit(a=a, b=b, c=float(np.exp(log_c)), rmse=float(np.sqrt(sse / len(n))),
                       n_points=len(np.unique(n)))


def power_law_fits(points: pd.DataFrame) -> dict[str, PowerLawFit | None]:
    return {series: fit_power_law(curve["n"].to_numpy(), curve["score"].to_numpy())
            for series, curve in points[points["kind"] == "curve"].groupby("series", sort=True)}
