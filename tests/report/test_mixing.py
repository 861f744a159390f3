"""Mixing-sweep tables: OPT-IML's aggregation order and the winner (no Ray)."""

from __future__ import annotations

import pandas as pd
import pytest
from report_synthetic import eps_results

from imlsweep.report.mixing import combined_scores, mixing_tables, printed_label


def test_one_table_per_level_with_the_best_value_marked():
    tables = mixing_tables(eps_results(), ["eps"])
    assert [t.level for t in tables] == ["fully_held_out", "partially_supervised", "fully_supervised"]
    for table in tables:
        assert list(table.table.index) == ["128", "4096", "1000000"]  # numeric order, not text order
        assert table.best == "4096"
        assert set(table.shot_columns) == {"0-shot", "5-shot"}
        assert list(table.table.columns[-3:]) == ["0-shot avg", "5-shot avg", "combined"]


def test_aggregation_is_task_then_category_then_columns_then_combined():
    rows = []
    # Category A has two tasks (10 and 30 -> 20), category B one task (50): the 0-shot mean is
    # the mean of the category columns (35), not of the tasks (30). 5-shot: all 60. Combined 47.5.
    for task, category, score in (("t1", "A", 10.0), ("t2", "A", 30.0), ("t3", "B", 50.0)):
        for shots, value in ((0, score), (5, 60.0)):
            rows.append({"trial": "x", "status": "completed", "task_id": task, "category": category,
                         "level": "fully_held_out", "shots": shots, "score": value, "eps": 4096})
    table = mixing_tables(pd.DataFrame(rows), ["eps"])[0].table
    assert table.loc["4096", "0-shot / A"] == pytest.approx(20.0)
    assert table.loc["4096", "0-shot avg"] == pytest.approx(35.0)
    assert table.loc["4096", "combined"] == pytest.approx(47.5)


def test_failed_trials_are_left_out_and_missing_cells_stay_empty():
    results = eps_results()
    results.loc[results["trial"] == "eps-128", ["status", "score"]] = ["failed", None]
    results = results[~((results["trial"] == "eps-4096") & (results["category"] == "Title Generation"))]
    tables = mixing_tables(results, ["eps"])
    assert list(tables[0].table.index) == ["4096", "1000000"]
    assert pd.isna(tables[0].table.loc["4096", "0-shot / Title Generation"])
    assert tables[0].table.loc["4096", "combined"] > tables[0].table.loc["1000000", "combined"]
    combined = combined_scores(tables)
    assert list(combined.columns) == ["fully_held_out", "partially_supervised", "fully_supervised", "all levels"]


def test_printed_labels_print_like_the_paper():
    assert printed_label([2, 1, 27, 40, 27, 1, 2]) == "2/1/27/40/27/1/2"
    assert printed_label(4096.0) == "4096"
    assert printed_label(True) == "True"
    assert printed_label({"name": "superni_def_pos", "shots": 2.0}) == "name=superni_def_pos,shots=2.0"
