"""results.parquet holds the rows of several evaluations: each rewrite of one keeps the others."""

from __future__ import annotations

import pandas as pd
import pytest

from imlsweep.errors import UserError
from imlsweep.report.results import load_sweep_results
from imlsweep.sweep.results import other_evaluations, read_table, write_table


def rows(evaluation: str, score: float, trials=("a", "b")) -> list[dict]:
    return [{"sweep": "s", "stage": "st", "trial": trial, "eval": evaluation, "status": "completed", "task_id": "t1",
             "category": "c", "level": "fully_held_out", "shots": 0, "score": score, "eps": 5} for trial in trials]


def test_each_evaluation_keeps_the_others_rows(tmp_path):
    write_table(str(tmp_path), rows("default", 10.0))
    write_table(str(tmp_path), rows("long", 20.0), other_evaluations(str(tmp_path), "long"))
    write_table(str(tmp_path), rows("long", 30.0, ["a"]), other_evaluations(str(tmp_path), "long"))  # run again
    write_table(str(tmp_path), rows("default", 11.0), other_evaluations(str(tmp_path), "default"))  # a driver's rewrite
    table = read_table(str(tmp_path))
    assert list(table["eval"]) == ["default", "default", "long"]  # the trials' own first
    assert list(table["score"]) == [11.0, 11.0, 30.0] and list(table["eps"]) == [5, 5, 5]

    named = load_sweep_results(tmp_path, "long")
    assert list(named.table["trial"]) == ["a"] and named.swept_keys == ["eps"] and named.evaluation == "long"
    assert list(load_sweep_results(tmp_path).table["score"]) == [11.0, 11.0]
    with pytest.raises(UserError, match="no evaluation 'short' \\(there are: default, long;"):
        load_sweep_results(tmp_path, "short")


def test_a_table_from_before_named_evaluations_is_the_trials_own(tmp_path):
    pd.DataFrame(rows("default", 10.0)).drop(columns="eval").to_parquet(tmp_path / "results.parquet")
    assert list(read_table(str(tmp_path))["eval"]) == ["default", "default"]
    assert load_sweep_results(tmp_path).swept_keys == ["eps"]
