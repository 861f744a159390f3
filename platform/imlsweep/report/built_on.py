"""Stages built on finished trials, in the report: transfer matrices (`from_each`) and merged models
(`merge`), pure functions over the results table and the evaluated instances.

A transfer trial is scored on its target task; its gain is its score minus the target's own single-task
score (the source stage's trial trained on the target, evaluated on it), a paired difference over the
instances both evaluated, with its bootstrap interval and p-value (`imlsweep.report.uncertainty`). A
merged model is scored on its group's tasks against the single-task model of each task and against
the `versus` multi-task trials, per task, per category and overall. Which stages these are, and which
trials they build on, comes from the spec the sweep ran (`sweep.yaml`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from imlsweep.report.intervals import OVERALL, PAIR_KEYS, instance_values
from imlsweep.report.results import finished
from imlsweep.report.uncertainty import paired_difference
from imlsweep.sweep.expand import name_part

TRANSFER_COLUMNS = ["source_task", "target_task", "source_category", "target_category", "transfer", "single_task",
                    "gain", "ci_low", "ci_high", "p_value", "instances"]
SINGLE_TASK = "single_task"
MULTI_TASK = "multi_task"


@dataclass(frozen=True)
class BuiltOnStage:
    """A `from_each` or `merge` stage of the spec, with the trials it builds on."""

    name: str
    sources: dict[str, Any]  # the selection: {stage, where}
    versus: dict[str, Any] | None = None  # merge: the multi-task trials it is compared with


def built_on_stages(spec: dict[str, Any], kind: str) -> list[BuiltOnStage]:
    """The spec's stages of `kind` (`from_each` or `merge`), from the sweep's sweep.yaml data."""
    stages = []
    for stage in spec.get("stages") or []:
        selection = stage.get(kind)
        if isinstance(selection, dict):
            stages.append(BuiltOnStage(name=stage["name"], sources=selection, versus=selection.get("versus")))
    return stages


def selected_rows(table: pd.DataFrame, selection: dict[str, Any]) -> pd.DataFrame:
    """Finished rows of the trials a selection names (its stage, labels equal to its `where`)."""
    rows = finished(table)
    chosen = rows["stage"] == selection["stage"]
    for key, value in (selection.get("where") or {}).items():
        chosen &= rows[key] == value if key in rows.columns else False
    return rows[chosen]


def own_task_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of a per-task trial evaluated on the task it trained on."""
    return rows[rows["task_id"] == rows["trained_task"]] if "trained_task" in rows.columns else rows.iloc[:0]


class InstanceIndex:
    """The evaluated instances by trial, so each comparison joins only its trials' instances."""

    def __init__(self, instances: pd.DataFrame | None) -> None:
        self.by_trial = dict(tuple(instances.groupby("trial"))) if instances is not None else {}

    def values(self, rows: pd.DataFrame) -> pd.DataFrame | None:
        parts = [self.by_trial[trial] for trial in rows["trial"].unique() if trial in self.by_trial]
        if not parts:
            return None
        return instance_values(rows, pd.concat(parts, ignore_index=True), "score")

    def difference(self, a: pd.DataFrame, b: pd.DataFrame, seed: int, key: str) -> dict[str, float]:
        """A - B's interval, p-value and instances; NaN where the trials left no shared instances."""
        values_a, values_b = self.values(a), self.values(b)
        found = (paired_difference(values_a, values_b, PAIR_KEYS, seed, key)
                 if values_a is not None and values_b is not None else None)
        if found is None:
            return {"ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan, "instances": 0}
        interval = found.interval
        return {"ci_low": interval.low, "ci_high": interval.high, "p_value": found.p_value,
                "instances": interval.n_instances}


def transfer_gains(table: pd.DataFrame, instances: pd.DataFrame | None, stage: BuiltOnStage,
                   seed: int) -> pd.DataFrame:
    """One row per (source task, target task): the transfer trial's score on the target, the target's own
    single-task score, the gain with its interval, and both tasks' categories."""
    transfers = own_task_rows(finished(table)[finished(table)["stage"] == stage.name])
    singles = own_task_rows(selected_rows(table, stage.sources))
    if transfers.empty or "source_task" not in transfers.columns:
        return pd.DataFrame(columns=TRANSFER_COLUMNS)
    category = dict(zip(singles["task_id"], singles["category"])) | dict(zip(transfers["task_id"], transfers["category"]))
    index = InstanceIndex(instances)
    records = []
    for (source, target), rows in transfers.groupby(["source_task", "trained_task"], sort=True):
        own = singles[singles["task_id"] == target]
        record = {"source_task": source, "target_task": target, "source_category": category.get(source),
                  "target_category": category.get(target), "transfer": rows["score"].mean(),
                  "single_task": own["score"].mean() if len(own) else math.nan}
        record["gain"] = record["transfer"] - record["single_task"]
        records.append(record | index.difference(rows, own, seed, f"transfer|{source}|{target}"))
    return pd.DataFrame(records, columns=TRANSFER_COLUMNS)


def gain_matrix(gains: pd.DataFrame, rows: str = "source_task", columns: str = "target_task") -> pd.DataFrame:
    """Mean gain by source (rows) and target (columns)."""
    return gains.pivot_table(index=rows, columns=columns, values="gain", aggfunc="mean", sort=True)


def source_ranking(gains: pd.DataFrame, by: str = "target_task", source: str = "source_task",
                   top: int = 3) -> pd.DataFrame:
    """The `top` sources per target (by mean gain), best first."""
    means = gains.groupby([by, source], as_index=False)["gain"].mean().dropna(subset=["gain"])
    means = means.sort_values([by, "gain"], ascending=[True, False])
    means["rank"] = means.groupby(by).cumcount() + 1
    return means[means["rank"] <= top][[by, "rank", source, "gain"]].reset_index(drop=True)


def extreme_transfers(gains: pd.DataFrame, count: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The `count` best and worst transfers by gain, with their intervals."""
    ranked = gains.dropna(subset=["gain"]).sort_values("gain", ascending=False)
    return ranked.head(count).reset_index(drop=True), ranked.tail(count).iloc[::-1].reset_index(drop=True)


def merge_scores(table: pd.DataFrame, stages: list[BuiltOnStage]) -> pd.DataFrame:
    """Per task: its category, the single-task and multi-task scores and one column per merged variant
    (a merged trial's name without its group: `merged-ties-scale=0.5`)."""
    rows = finished(table)
    columns: dict[str, pd.Series] = {}
    for stage in stages:
        singles = own_task_rows(selected_rows(table, stage.sources))
        columns.setdefault(SINGLE_TASK, singles.groupby("task_id")["score"].mean())
        if stage.versus:
            columns.setdefault(MULTI_TASK, selected_rows(table, stage.versus).groupby("task_id")["score"].mean())
        merged = merged_rows(rows, stage.name)
        for variant, part in merged.groupby("variant", sort=True):
            columns[variant] = part.groupby("task_id")["score"].mean()
    if not columns:
        return pd.DataFrame()
    scores = pd.DataFrame(columns)
    category = rows.drop_duplicates("task_id").set_index("task_id")["category"]
    return scores.assign(category=category.reindex(scores.index)).rename_axis("task_id").reset_index()


def merged_rows(rows: pd.DataFrame, stage: str) -> pd.DataFrame:
    merged = rows[rows["stage"] == stage]
    if merged.empty or "merged_group" not in merged.columns:
        return merged.assign(variant=pd.Series(dtype=str))
    suffixes = "-" + merged["merged_group"].map(name_part)
    return merged.assign(variant=[trial.removesuffix(suffix) for trial, suffix in zip(merged["trial"], suffixes)])


def merge_comparisons(table: pd.DataFrame, instances: pd.DataFrame | None, stages: list[BuiltOnStage],
                      seed: int) -> pd.DataFrame:
    """Each merged variant - single-task and - multi-task, per category and overall, on the tasks the
    merged models were scored on: mean scores, the paired difference's interval and p-value."""
    rows, index, records = finished(table), InstanceIndex(instances), []
    for stage in stages:
        references = {SINGLE_TASK: own_task_rows(selected_rows(table, stage.sources))}
        if stage.versus:
            references[MULTI_TASK] = selected_rows(table, stage.versus)
        for variant, merged in merged_rows(rows, stage.name).groupby("variant", sort=True):
            for name, reference in references.items():
                for part in [OVERALL] + sorted(set(merged["category"])):
                    a = merged if part == OVERALL else merged[merged["category"] == part]
                    b = reference[reference["task_id"].isin(set(a["task_id"]))]
                    if b.empty:
                        continue
                    record = {"merged": variant, "versus": name, "category": part, "merged_score": a["score"].mean(),
                              "versus_score": b["score"].mean()}
                    record["difference"] = record["merged_score"] - record["versus_score"]
                    records.append(record | index.difference(a, b, seed, f"merge|{variant}|{name}|{part}"))
    return pd.DataFrame(records, columns=["merged", "versus", "category", "merged_score", "versus_score",
                                          "difference", "ci_low", "ci_high", "p_value", "instances"])
