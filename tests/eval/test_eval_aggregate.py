"""The OPT-IML and sample-efficiency rollups on hand-computed tables."""

import pytest

from imlsweep.eval.aggregate import club_categories, opt_iml_rollup, sample_efficiency_rollup, task_group

FHO, PS = "fully_held_out", "partially_supervised"


def row(task_id, shots, benchmark, category, level, score):
    return {"task_id": task_id, "shots": shots, "benchmark": benchmark, "category": category, "level": level,
            "score": score}


TABLE = [
    # two MMLU subjects (sub-tasks of one task), COPA in two benchmarks, a QA task, a 0-shot-only summary task
    row("mmlu_algebra", 0, "flan", "QA", FHO, 40.0), row("mmlu_law", 0, "flan", "QA", FHO, 60.0),
    row("copa_ps", 0, "promptsource", "Cause Effect", FHO, 70.0), row("copa_niv2", 0, "niv2", "Cause Effect", FHO, 50.0),
    row("squad", 0, "niv2", "QA", FHO, 30.0), row("xsum", 0, "promptsource", "Summarization", PS, 20.0),
    row("mmlu_algebra", 5, "flan", "QA", FHO, 50.0), row("mmlu_law", 5, "flan", "QA", FHO, 70.0),
    row("copa_ps", 5, "promptsource", "Cause Effect", FHO, 80.0), row("copa_niv2", 5, "niv2", "Cause Effect", FHO, 60.0),
    row("squad", 5, "niv2", "QA", FHO, 50.0),
]
GROUPS = {"mmlu": ["mmlu_*"], "copa": ["copa_ps", "copa_niv2"]}


def test_opt_iml_rollup_by_category():
    result = opt_iml_rollup(TABLE, "category", GROUPS)
    # sub-tasks: mmlu = 50 (0-shot), 60 (5-shot); same task across benchmarks: copa = 60, 70
    merged = {(t["shots"], t["task"]): t["score"] for t in result["merged_tasks"]}
    assert merged == {(0, "mmlu"): 50.0, (0, "copa"): 60.0, (0, "squad"): 30.0, (0, "xsum"): 20.0,
                      (5, "mmlu"): 60.0, (5, "copa"): 70.0, (5, "squad"): 50.0}
    # columns: QA = mean(mmlu, squad) = 40 / 55; Cause Effect = 60 / 70; Summarization = 20 (0-shot only)
    assert result["per_category"] == {"Cause Effect": {"0": 60.0, "5": 70.0}, "QA": {"0": 40.0, "5": 55.0},
                                      "Summarization": {"0": 20.0}}
    assert result["per_shots"] == {"0": pytest.approx(40.0), "5": pytest.approx(62.5)}
    assert result["per_level"] == {FHO: {"0": 50.0, "5": 62.5}, PS: {"0": 20.0}}
    assert result["combined"] == pytest.approx(51.25)


def test_opt_iml_rollup_by_benchmark_keeps_benchmarks_apart():
    result = opt_iml_rollup(TABLE, "benchmark", GROUPS)
    columns = {(c["shots"], c["level"], c["benchmark"]): c["score"] for c in result["columns"]}
    # niv2 at 0-shot: mean(copa_niv2 50, squad 30) = 40; flan: mmlu 50; promptsource: copa_ps 70 | xsum 20 (PS)
    assert columns[(0, FHO, "niv2")] == 40.0 and columns[(0, FHO, "flan")] == 50.0
    assert columns[(0, FHO, "promptsource")] == 70.0 and columns[(0, PS, "promptsource")] == 20.0
    assert result["per_shots"]["0"] == pytest.approx(45.0)


def test_shot_and_combined_means_reproduce_the_published_eps_row():
    # OPT-IML's EPS 4096 row: 0-shot 46.02 and 5-shot 57.58 combine to 51.80
    table = [row(f"t{i}", shots, "niv2", f"c{i}", FHO, value)
             for i, (zero, five) in enumerate([(40.02, 55.58), (52.02, 59.58)])
             for shots, value in ((0, zero), (5, five))]
    result = opt_iml_rollup(table)
    assert result["per_shots"] == {"0": pytest.approx(46.02), "5": pytest.approx(57.58)}
    assert round(result["combined"], 2) == 51.80


def test_task_group_patterns():
    assert task_group("mmlu_law", GROUPS) == "mmlu"
    assert task_group("copa_ps", GROUPS) == "copa"
    assert task_group("squad", GROUPS) == "squad"


def test_sample_efficiency_rollup_clubs_small_categories():
    tasks = [
        {"task_id": "te1", "category": "Textual Entailment", "rougeL": 80.0, "n_eval": 100},
        {"task_id": "te2", "category": "Textual Entailment", "rougeL": 60.0, "n_eval": 100},
        {"task_id": "te3", "category": "Textual Entailment", "rougeL": 70.0, "n_eval": 50},
        {"task_id": "tg1", "category": "Title Generation", "rougeL": 40.0, "n_eval": 100},
        {"task_id": "tg2", "category": "Title Generation", "rougeL": 50.0, "n_eval": 100},
        {"task_id": "wa1", "category": "Word Analogy", "rougeL": 90.0, "n_eval": 100},
        {"task_id": "ge1", "category": "Grammar Error Correction", "rougeL": 30.0, "n_eval": 50},
    ]
    result = sample_efficiency_rollup(tasks, largest_categories=2)
    assert result["per_task"]["te3"] == 70.0
    # instance means: TE = (8000 + 6000 + 3500) / 250 = 70; TG = 45; others = (9000 + 1500) / 150 = 70
    assert result["per_category"] == {"Textual Entailment": pytest.approx(70.0), "Title Generation": pytest.approx(45.0),
                                      "others": pytest.approx(70.0)}
    assert result["tasks_per_category"] == {"Textual Entailment": 3, "Title Generation": 2, "others": 2}
    assert result["overall"] == pytest.approx((8000 + 6000 + 3500 + 4000 + 5000 + 9000 + 1500) / 600)
    assert sample_efficiency_rollup(tasks)["per_category"]["Word Analogy"] == 90.0


def test_clubbing_ties_break_by_name():
    assert club_categories({"a": "X", "b": "Y", "c": "Z", "d": "Z"}, 2) == {"a": "X", "b": "others", "c": "Z", "d": "Z"}


def test_empty_table_is_an_error():
    with pytest.raises(ValueError, match="no task metrics"):
        opt_iml_rollup([])
