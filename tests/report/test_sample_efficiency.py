"""Curves, power-law fits and data-needed-to-match on tables with known answers (no Ray)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from report_synthetic import BASELINE_PENALTY, CURVE, POOL, power_law

from imlsweep.report.sample_efficiency import (
    OTHERS,
    all_samples_position,
    best_supervised_baseline,
    club_small_categories,
    data_needed_to_match,
    efficiency_points,
    fit_power_law,
    samples_to_reach,
)


@pytest.mark.parametrize("a, b, c", [(75.0, 60.0, 0.3), (40.0, 15.0, 0.8), (90.0, 300.0, 0.05)])
def test_power_law_fit_recovers_known_parameters(a, b, c):
    n = np.array([100, 200, 500, 1000, 3000])
    fit = fit_power_law(n, power_law(a, b, c, n))
    assert fit is not None
    assert fit.a == pytest.approx(a, rel=1e-3)
    assert fit.b == pytest.approx(b, rel=1e-3)
    assert fit.c == pytest.approx(c, rel=1e-3)
    assert fit.rmse < 1e-6


def test_power_law_fit_on_noisy_points_stays_close():
    rng = np.random.default_rng(7)
    n = np.geomspace(50, 20_000, 12)
    fit = fit_power_law(n, power_law(70.0, 50.0, 0.4, n) + rng.normal(0, 0.05, n.size))
    assert fit.a == pytest.approx(70.0, abs=0.5) and fit.c == pytest.approx(0.4, abs=0.05)


def test_power_law_fit_needs_three_distinct_sizes():
    assert fit_power_law(np.array([100, 100, 200]), np.array([1.0, 2.0, 3.0])) is None


def test_samples_to_reach_interpolates_on_the_log_axis():
    # Halfway in score between 100 and 10,000 is the geometric mean, 1,000.
    assert samples_to_reach(np.array([100, 10_000]), np.array([50.0, 60.0]), 55.0) == pytest.approx(1000.0)
    assert samples_to_reach(np.array([10_000, 100]), np.array([60.0, 50.0]), 52.5) == pytest.approx(10 ** 2.5)
    assert samples_to_reach(np.array([100, 200]), np.array([50.0, 60.0]), 40.0) == 100.0  # already there
    assert samples_to_reach(np.array([100, 200]), np.array([50.0, 60.0]), 61.0) is None  # never reached
    # A curve that dips: the first crossing counts.
    assert samples_to_reach(np.array([1, 10, 100, 1000]), np.array([0.0, 10.0, 5.0, 20.0]), 10.0) == pytest.approx(10.0)


def test_all_is_placed_at_the_mean_training_pool(grid_results):
    assert all_samples_position(grid_results) == pytest.approx(POOL)
    multi_only = grid_results[grid_results["setting"] == "multi_task"]
    assert all_samples_position(multi_only) == pytest.approx(POOL)  # trial total / tasks evaluated


def test_curves_and_baselines_hold_the_generating_scores(grid_results):
    points = efficiency_points(grid_results)
    for setting, (a, b, c) in CURVE.items():
        curve = points[(points["kind"] == "curve") & (points["series"] == setting)]
        assert list(curve["samples"]) == ["100", "200", "1000", "all"]
        assert np.allclose(curve["score"], power_law(a, b, c, curve["n"].to_numpy()))
        baseline = points[(points["kind"] == "baseline") & (points["series"] == f"{setting} baseline")]
        assert np.allclose(baseline["score"], power_law(a, b, c, baseline["n"].to_numpy()) - BASELINE_PENALTY)
    reference = points[points["kind"] == "reference"]
    assert reference[["series", "samples", "n", "score"]].values.tolist() == [["multi_task baseline", "0", 0.0, 50.0]]
    best = best_supervised_baseline(points)
    assert best["series"] == "multi_task baseline" and best["samples"] == "all"


def test_overall_score_weights_tasks_by_their_instances():
    rows = pd.DataFrame({
        "trial": ["t", "t"], "status": ["completed"] * 2, "task_id": ["a", "b"], "category": ["x", "x"],
        "level": ["l", "l"], "shots": [0, 0], "score": [10.0, 40.0], "rougeL": [10.0, 40.0], "n_eval": [30, 10],
        "train_examples": [100, 100], "samples_per_task": ["100", "100"], "setting": ["multi_task"] * 2})
    points = efficiency_points(rows)
    assert points["score"].tolist() == [pytest.approx(17.5)]  # (30*10 + 10*40) / 40


def test_data_needed_to_match(grid_results):
    needed = data_needed_to_match(efficiency_points(grid_results)).set_index(["series", "baseline"])
    single = CURVE["single_task"]
    target = power_law(*CURVE["multi_task"], 200) - BASELINE_PENALTY
    # Independent check: linear interpolation of the sampled single-task points in log n.
    sampled = np.array([100, 200, 1000, POOL])
    expected = math.exp(np.interp(target, power_law(*single, sampled), np.log(sampled)))
    row = needed.loc[("single_task", "multi_task baseline @ 200")]
    assert row["samples_needed"] == pytest.approx(expected)
    assert not row["at_smallest"]
    assert needed.loc[("multi_task", "single_task baseline @ all")]["at_smallest"]
    assert pd.isna(needed.loc[("single_task", "multi_task baseline @ all")]["samples_needed"])
    assert len(needed) == 2 * 8  # every curve against every baseline point


def test_small_categories_are_clubbed_into_others(grid_results):
    clubbed = club_small_categories(grid_results["category"], grid_results["task_id"], keep=6)
    assert clubbed.nunique() == 7
    assert set(grid_results.loc[clubbed == OTHERS, "category"]) == {"Word Analogy", "Keyword Tagging"}
