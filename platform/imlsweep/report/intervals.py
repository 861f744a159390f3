"""The report's numbers with their uncertainty: result rows joined to their evaluated instances.

A sweep's trials leave `predictions.parquet` (one row per evaluated item); `instance_values` turns
those of a set of result rows into the bootstrap's input (`imlsweep.report.uncertainty`): one stratum
per (trial, task, shots), weighted by its instances, so a bootstrapped mean is the instance-weighted
mean the curves show. Replicates are the values of the results' `replicate` column (a stage's
`replicates: N`) or of a swept `seed`; without either each number stands on one replicate.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from imlsweep.report.results import REPLICATE_KEYS, finished
from imlsweep.report.sample_efficiency import (
    PowerLawFit,
    efficiency_rows,
    point_keys,
    samples_to_reach_draws,
)
from imlsweep.report.uncertainty import Interval, bootstrap_mean, interval_of_derived, paired_difference

INSTANCE_KEYS = ["trial", "task_id", "shots"]
PAIR_KEYS = ["task_id", "shots", "example_id"]
OVERALL = "overall"


def replicate_column(table: pd.DataFrame) -> str | None:
    return next((key for key in REPLICATE_KEYS if key in table.columns), None)


def instance_values(rows: pd.DataFrame, instances: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per evaluated instance of `rows`: replicate, stratum, value, weight, and the rows' columns."""
    column = replicate_column(rows)
    keep = [c for c in rows.columns if c not in ("value", "weight", "rougeL", "score", "exact_match", "accuracy")]
    joined = rows[keep].merge(instances[INSTANCE_KEYS + ["example_id", metric]], on=INSTANCE_KEYS)
    joined["replicate"] = joined[column].astype(str) if column else "0"
    joined["stratum"] = joined["trial"] + "/" + joined["task_id"] + "/" + joined["shots"].astype(str)
    joined["value"] = joined[metric]
    joined["weight"] = joined.groupby(["replicate", "stratum"])["value"].transform("size").astype(float)
    return joined


def point_name(point: pd.Series | tuple, keys: list[str]) -> str:
    values = point if isinstance(point, tuple) else tuple(point[key] for key in keys)
    return "|".join(str(value) for value in values)


def efficiency_intervals(table: pd.DataFrame, instances: pd.DataFrame | None, seed: int,
                         group: str | None = None, metric: str = "rougeL") -> dict[str, Interval]:
    """The bootstrap interval of every sample-efficiency point that has instances, by `point_name`."""
    if instances is None or instances.empty:
        return {}
    keys = point_keys(group)
    values = instance_values(efficiency_rows(table, group, metric), instances, metric)
    return {point_name(key, keys): bootstrap_mean(part, seed, f"point|{point_name(key, keys)}")
            for key, part in values.groupby(keys, sort=True)}


def with_intervals(points: pd.DataFrame, intervals: dict[str, Interval], group: str | None = None) -> pd.DataFrame:
    """`points` plus ci_low, ci_high, instances, replicates (empty where a point has no instances)."""
    keys = point_keys(group)
    named = points.rename(columns={"samples": "samples_per_task"})
    found = [intervals.get(point_name(row, keys)) for _, row in named.iterrows()]
    return points.assign(ci_low=[i.low if i else math.nan for i in found],
                         ci_high=[i.high if i else math.nan for i in found],
                         instances=[i.n_instances if i else 0 for i in found],
                         replicates=[i.n_replicates if i else 0 for i in found])


def needed_intervals(points: pd.DataFrame, intervals: dict[str, Interval], needed: pd.DataFrame,
                     fits: dict[str, PowerLawFit | None]) -> pd.DataFrame:
    """`data_needed_to_match` plus its interval (samples needed on each bootstrap draw of the curve's
    points and the baseline; an open upper end when some draws never reach it) and, for a baseline
    the curve does not reach, the identifiable fit's extrapolation."""
    keys = point_keys(None)
    named = points.rename(columns={"samples": "samples_per_task"})
    draws_of = {(row["series"], row["kind"], row["samples_per_task"]): intervals.get(point_name(row, keys))
                for _, row in named.iterrows()}
    lows, highs, extrapolated = [], [], []
    for _, row in needed.iterrows():
        curve = named[(named["kind"] == "curve") & (named["series"] == row["series"])].sort_values("n")
        curve_draws = [draws_of[(row["series"], "curve", s)] for s in curve["samples_per_task"]]
        baseline_series, baseline_samples = row["baseline"].rsplit(" @ ", 1)
        baseline = draws_of.get((baseline_series, "baseline", baseline_samples))
        if baseline is None or any(d is None for d in curve_draws):
            lows.append(math.nan)
            highs.append(math.nan)
        else:
            matrix = np.vstack([d.draws for d in curve_draws])
            low, high = interval_of_derived(samples_to_reach_draws(curve["n"].to_numpy(), matrix, baseline.draws))
            lows.append(low)
            highs.append(high)
        fit = fits.get(row["series"])
        missing = row["samples_needed"] is None or pd.isna(row["samples_needed"])
        extrapolated.append(fit.samples_for(row["baseline_score"]) if missing and fit is not None else None)
    return needed.assign(needed_low=lows, needed_high=highs, extrapolated=extrapolated)


def comparison_pairs(rows: pd.DataFrame) -> list[tuple[str, str, pd.Series, pd.Series]]:
    """The study's comparisons as (name, samples, mask A, mask B): multi-task vs single-task at each
    samples per task (with instructions), and with vs without instructions per setting and samples."""
    pairs = []
    instructed = rows["kind"] == "curve"
    setting = rows["series"].str.removesuffix(" baseline")
    for samples in rows.groupby("samples_per_task")["n"].min().sort_values().index:
        at = rows["samples_per_task"] == samples
        multi, single = at & instructed & (setting == "multi_task"), at & instructed & (setting == "single_task")
        if multi.any() and single.any():
            pairs.append(("multi-task - single-task", samples, multi, single))
        for name in sorted(set(setting[at])):
            with_, without = at & instructed & (setting == name), at & (rows["kind"] == "baseline") & (setting == name)
            if with_.any() and without.any():
                pairs.append((f"{name.replace('_', '-')}: instructions - none", samples, with_, without))
    return pairs


def efficiency_comparisons(table: pd.DataFrame, instances: pd.DataFrame | None, seed: int, group: str = "category",
                           metric: str = "rougeL") -> pd.DataFrame:
    """Paired differences A - B on the instances both evaluated, per `group` value and overall: the
    difference, its interval, the paired-bootstrap p-value and how many instances and replicates it
    stands on."""
    columns = ["comparison", "samples", group, "difference", "ci_low", "ci_high", "p_value", "instances",
               "replicates"]
    if instances is None or instances.empty:
        return pd.DataFrame(columns=columns)
    values = instance_values(efficiency_rows(table, group, metric), instances, metric)
    records = []
    for name, samples, mask_a, mask_b in comparison_pairs(values):
        parts = [(OVERALL, values[group].notna() | values[group].isna())]
        parts += [(g, values[group] == g) for g in sorted(set(values[group]))]
        for part, selector in parts:
            a, b = values[mask_a & selector], values[mask_b & selector]
            found = paired_difference(a, b, PAIR_KEYS, seed, f"pair|{name}|{samples}|{part}")
            if found is None:
                continue
            interval = found.interval
            records.append({"comparison": name, "samples": samples, group: part, "difference": interval.mean,
                            "ci_low": interval.low, "ci_high": interval.high, "p_value": found.p_value,
                            "instances": interval.n_instances, "replicates": interval.n_replicates})
    return pd.DataFrame(records, columns=columns)


def opt_iml_weights(values: pd.DataFrame, by_category: bool) -> pd.Series:
    """Stratum weights that make the weighted mean of task means OPT-IML's: tasks -> category means ->
    their mean per shot setting -> mean over shot settings (within one category: tasks, then shots)."""
    tasks = values.groupby(["shots", "category"])["task_id"].transform("nunique")
    categories = values.groupby("shots")["category"].transform("nunique")
    shots = values["shots"].nunique()
    return 1.0 / (tasks * shots * (1 if by_category else categories))


def mixing_comparisons(table: pd.DataFrame, instances: pd.DataFrame | None, value_labels: pd.Series, seed: int,
                       baseline: str) -> pd.DataFrame:
    """Each swept value - `baseline` per level, overall (OPT-IML's combined score) and per category, on
    the instances both evaluated: the difference, its interval, the paired-bootstrap p-value and what it
    stands on. `value_labels` is each row's swept value as printed."""
    columns = ["level", "value", "category", "difference", "ci_low", "ci_high", "p_value", "instances", "replicates"]
    rows = finished(table)
    if instances is None or instances.empty or rows.empty:
        return pd.DataFrame(columns=columns)
    values = instance_values(rows.assign(swept=value_labels.loc[rows.index]), instances, "score")
    records = []
    for (level, value), part in values.groupby(["level", "swept"], sort=False):
        if value == baseline:
            continue
        reference = values[(values["level"] == level) & (values["swept"] == baseline)]
        for category in [OVERALL] + sorted(set(part["category"])):
            a = part if category == OVERALL else part[part["category"] == category]
            a = a.assign(weight=opt_iml_weights(a, by_category=category != OVERALL))
            found = paired_difference(a, reference, PAIR_KEYS, seed, f"mixing|{level}|{value}|{category}")
            if found is not None:
                interval = found.interval
                records.append({"level": level, "value": value, "category": category, "difference": interval.mean,
                                "ci_low": interval.low, "ci_high": interval.high, "p_value": found.p_value,
                                "instances": interval.n_instances, "replicates": interval.n_replicates})
    return pd.DataFrame(records, columns=columns)
