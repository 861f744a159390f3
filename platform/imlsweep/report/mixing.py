"""Mixing-sweep tables in the layout of OPT-IML's EPS and benchmark-proportion tables.

One table per generalization level: a row per swept value, a column per category at each shot
setting, then the 0-shot and k-shot means over those columns and their combined mean. The
aggregation follows OPT-IML: task scores -> category means -> mean over category columns per shot
setting -> combined mean of the shot settings; the highest combined mean wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from imlsweep.corpus.schema import LEVELS
from imlsweep.report.results import finished
from imlsweep.sweep.expand import label_value

COMBINED = "combined"


@dataclass
class MixingTable:
    level: str
    table: pd.DataFrame  # index: swept value label; columns: "<shots>-shot / <category>", means
    best: str | None     # the label of the row with the best combined mean
    shot_columns: dict[str, list[str]]  # "0-shot" -> its category columns


def printed_label(value: Any) -> str:
    """A swept value as the tables print it: its results-table label (`label_value`), a whole float
    without its ".0": 4096, 2/1/27/40/27/1/2, True."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(label_value(value))


def swept_printed_labels(table: pd.DataFrame, keys: list[str]) -> pd.Series:
    if len(keys) == 1:
        return table[keys[0]].map(printed_label)
    return table[keys].apply(lambda row: ", ".join(f"{k}={printed_label(row[k])}" for k in keys), axis=1)


def shots_label(shots: int) -> str:
    return f"{shots}-shot"


def ordered_values(table: pd.DataFrame, keys: list[str]) -> list[str]:
    """Swept values in a reading order: numerically when the single key is numeric."""
    labels = swept_printed_labels(table, keys)
    if len(keys) == 1:
        numeric = pd.to_numeric(table[keys[0]], errors="coerce")
        if numeric.notna().all():
            return list(dict.fromkeys(labels.iloc[np.argsort(numeric.to_numpy(), kind="stable")]))
    return list(dict.fromkeys(labels))


def mixing_tables(table: pd.DataFrame, keys: list[str]) -> list[MixingTable]:
    """One `MixingTable` per generalization level present in the finished rows."""
    rows = finished(table)
    if rows.empty or not keys:
        return []
    rows = rows.assign(value=swept_printed_labels(rows, keys))
    order = ordered_values(rows, keys)
    levels = [level for level in LEVELS if level in set(rows["level"])]
    levels += sorted(set(rows["level"].astype(str)) - set(levels))
    return [level_table(rows[rows["level"] == level], level, order) for level in levels]


def level_table(rows: pd.DataFrame, level: str, order: list[str]) -> MixingTable:
    task_scores = rows.groupby(["value", "shots", "category", "task_id"])["score"].mean()
    category_scores = task_scores.groupby(["value", "shots", "category"]).mean().reset_index()
    columns: dict[str, pd.Series] = {}
    shot_columns: dict[str, list[str]] = {}
    shot_means: dict[str, pd.Series] = {}
    for shots, per_shots in category_scores.groupby("shots", sort=True):
        wide = per_shots.pivot(index="value", columns="category", values="score")
        label = shots_label(int(shots))
        shot_columns[label] = []
        for category in sorted(wide.columns):
            name = f"{label} / {category}"
            columns[name] = wide[category]
            shot_columns[label].append(name)
        shot_means[label] = wide.mean(axis=1)  # over the category columns this value has
    result = pd.DataFrame(columns)
    for label, means in shot_means.items():
        result[f"{label} avg"] = means
    result[COMBINED] = pd.DataFrame(shot_means).mean(axis=1)
    result = result.reindex([value for value in order if value in result.index])
    best = result[COMBINED].idxmax() if result[COMBINED].notna().any() else None
    return MixingTable(level=level, table=result, best=best, shot_columns=shot_columns)


def combined_scores(tables: list[MixingTable]) -> pd.DataFrame:
    """Combined mean per swept value (rows) and level (columns), plus the mean over levels."""
    frame = pd.DataFrame({table.level: table.table[COMBINED] for table in tables})
    if len(tables) > 1:
        frame["all levels"] = frame.mean(axis=1)
    return frame
