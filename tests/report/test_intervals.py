"""The report's intervals and paired comparisons, from trials' predictions with replicates."""

from __future__ import annotations

import re

import pytest
from report_synthetic import REPLICATED_SAMPLES, REPLICATED_TASKS, eps_results, replicated_sweep, with_predictions, write_sweep

from imlsweep.report.build import build_report
from imlsweep.report.intervals import efficiency_comparisons, efficiency_intervals, mixing_comparisons, with_intervals
from imlsweep.report.mixing import COMBINED, mixing_tables, swept_printed_labels
from imlsweep.report.results import load_instances, load_sweep_results
from imlsweep.report.sample_efficiency import efficiency_points


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    sweep_dir = replicated_sweep(tmp_path_factory.mktemp("sweeps") / "replicated")
    results = load_sweep_results(sweep_dir)
    return sweep_dir, results, load_instances(sweep_dir, results.table)


def test_every_point_has_an_interval_around_it_on_all_its_instances_and_replicates(replicated):
    _, results, instances = replicated
    points = with_intervals(efficiency_points(results.table), efficiency_intervals(results.table, instances, seed=0))
    assert len(points) == 16 and "replicate" not in results.mixing_keys
    assert (points["ci_low"] < points["score"]).all() and (points["score"] < points["ci_high"]).all()
    assert set(points["replicates"]) == {2}
    assert set(points["instances"]) == {2 * 25 * len(REPLICATED_TASKS)}


def test_paired_comparisons_find_the_planted_difference_and_not_the_null_one(replicated):
    _, results, instances = replicated
    comparisons = efficiency_comparisons(results.table, instances, seed=0)
    overall = comparisons[comparisons["category"] == "overall"]
    planted = overall[overall["comparison"] == "multi-task - single-task"]
    assert list(planted["samples"]) == [str(s) for s in REPLICATED_SAMPLES]
    assert (planted["ci_low"] > 0).all() and (planted["p_value"] < 0.05).all()
    null = overall[overall["comparison"].str.endswith("instructions - none")]
    assert len(null) == 2 * len(REPLICATED_SAMPLES)
    assert (null["p_value"] < 0.05).sum() <= 1 and (null["ci_low"] < 0).sum() >= len(null) - 1
    per_category = comparisons[comparisons["category"] == "Title Generation"]
    assert set(per_category["instances"]) == {2 * 25 * 2}  # two tasks, 25 items, two replicates


def test_the_report_shows_intervals_and_is_the_same_for_the_same_seed(replicated, tmp_path):
    sweep_dir, _, _ = replicated
    page = build_report(sweep_dir, tmp_path / "a", seed=3).html.read_text()
    assert "95% CI low" in page and "Paired comparisons" in page and "multi-task - single-task" in page
    assert re.search(r"<td>10</td><td>[\d.]+</td><td>[\d.]+</td><td>[\d.]+</td><td>4</td><td>200</td><td>2</td>",
                     page.replace('<td class="text">10</td>', "<td>10</td>"))
    assert build_report(sweep_dir, tmp_path / "b", seed=3).html.read_text() == page


def test_other_seeds_draw_other_intervals(replicated):
    _, results, instances = replicated
    first, other = (efficiency_intervals(results.table, instances, seed=seed) for seed in (3, 4))
    assert first.keys() == other.keys() and any(first[k].low != other[k].low for k in first)


def test_mixing_values_against_the_first_match_opt_iml_combined_differences(tmp_path):
    table = eps_results()
    sweep_dir = with_predictions(write_sweep(tmp_path / "eps", table), table)
    results = load_sweep_results(sweep_dir)
    instances = load_instances(sweep_dir, results.table)
    labels = swept_printed_labels(results.table, ["eps"])
    compared = mixing_comparisons(results.table, instances, labels, seed=0, baseline="128")
    tables = {t.level: t.table for t in mixing_tables(results.table, ["eps"])}
    overall = compared[compared["category"] == "overall"].set_index(["level", "value"])
    assert len(overall) == 3 * 2
    for (level, value), row in overall.iterrows():
        expected = tables[level].loc[value, COMBINED] - tables[level].loc["128", COMBINED]
        assert row["difference"] == pytest.approx(expected)
        assert (row["ci_low"] > 0) == (value == "4096") and row["p_value"] < 0.05
    per_category = compared[(compared["category"] == "Title Generation") & (compared["level"] == "fully_held_out")]
    assert set(per_category["instances"]) == {4 * 10 * 2}  # its 4 tasks, 10 items each, 2 shot settings
    page = build_report(sweep_dir, tmp_path / "report").html.read_text()
    assert "Paired comparisons: each eps &minus; 128" in page
