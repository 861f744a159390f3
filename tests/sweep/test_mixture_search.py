"""Mixture search: the draws, the fit and the proposal (pure), the proxy and proposed trials a spec expands
into, the queue that holds the proposal back until the proxies have finished, and a proposal made on the
bundled SuperNI sample from a planted scorer. No Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imlsweep.config import ConfigError
from imlsweep.corpus.store import Corpus
from imlsweep.data.plan import group_shares, plan_mixture
from imlsweep.errors import UserError
from imlsweep.sweep.expand import expand_spec
from imlsweep.sweep.mixture_search import (
    draw_mixtures,
    fit_response,
    log_features,
    propose_mixture,
    weight_bounds,
    weight_matrix,
)
from imlsweep.sweep.proposal import make_proposal
from imlsweep.sweep.queue import QueuedTrial, TrialQueue
from imlsweep.sweep.spec import ProposalConstraints, SweepSpec
from imlsweep.trial_dir import TrialResult

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
GROUPS = ["crossfit", "exmix", "flan", "superni", "promptsource", "t5", "unifiedskg"]
PLANTED = np.array([0.8, -0.3, 1.5, 2.0, 0.4, 0.0, -0.6])  # score = 40 + PLANTED . log(w)


def planted_score(mixtures, coefficients=PLANTED, intercept=40.0, noise=0.0, seed=0):
    scores = intercept + log_features(weight_matrix(mixtures, GROUPS[:len(coefficients)])) @ coefficients
    return (scores + np.random.default_rng(seed).normal(0, noise, len(scores))).tolist()


def test_draws_are_a_function_of_the_seed_and_lie_on_the_simplex():
    first = draw_mixtures(GROUPS, 16, 1.0, seed=3)
    assert first == draw_mixtures(GROUPS, 16, 1.0, seed=3)
    assert first != draw_mixtures(GROUPS, 16, 1.0, seed=4)
    weights = weight_matrix(first, GROUPS)
    assert weights.shape == (16, 7) and (weights > 0).all() and np.allclose(weights.sum(axis=1), 1.0)
    assert len({tuple(row) for row in weights.round(6)}) == 16


def test_the_fit_recovers_a_planted_linear_response_on_log_weights():
    mixtures = draw_mixtures(GROUPS, 40, 1.0, seed=0)
    fit = fit_response(mixtures, planted_score(mixtures, noise=0.05), GROUPS, alpha=1e-3)
    assert np.allclose([fit.coefficients[group] for group in GROUPS], PLANTED, atol=0.05)
    assert fit.intercept == pytest.approx(40.0, abs=0.2)
    assert fit.loo_spearman > 0.99 and len(fit.loo_predictions) == 40
    assert fit.predict(mixtures[0]) == pytest.approx(planted_score(mixtures[:1])[0], abs=0.2)


def test_the_proposal_is_a_valid_mixture_at_the_constrained_optimum():
    mixtures = draw_mixtures(GROUPS, 40, 1.0, seed=0)
    fit = fit_response(mixtures, planted_score(mixtures), GROUPS, alpha=1e-6)
    eps = dict(zip(GROUPS, [0.04, 0.02, 0.20, 0.25, 0.45, 0.02, 0.02]))
    constraints = ProposalConstraints(min_weight=0.01, max_ratio_to_eps=3)
    proposed = propose_mixture(fit, eps, mixtures[:3], constraints)
    lower, upper = weight_bounds(GROUPS, eps, constraints)
    vector = weight_matrix([proposed], GROUPS)[0]
    assert set(proposed) == set(GROUPS) and vector.sum() == pytest.approx(1.0)
    assert (vector >= lower - 1e-9).all() and (vector <= upper + 1e-9).all()
    # groups with a negative or no effect sit at their floor; the rest share what is left in proportion to
    # their coefficients, crossfit capped at 3x its EPS weight (water-filling, worked by hand)
    expected = {"crossfit": 0.12, "exmix": 0.01, "flan": 0.85 * 1.5 / 3.9, "superni": 0.85 * 2.0 / 3.9,
                "promptsource": 0.85 * 0.4 / 3.9, "t5": 0.01, "unifiedskg": 0.01}
    assert proposed == pytest.approx(expected, abs=2e-3)
    assert fit.predict(proposed) > max(fit.predict(m) for m in [eps, *mixtures])
    assert propose_mixture(fit, eps, mixtures[:3], constraints) == proposed  # deterministic


def test_constraints_that_leave_no_mixture_name_the_key():
    eps = dict(zip(GROUPS, [0.0, 0.02, 0.20, 0.25, 0.45, 0.04, 0.04]))
    with pytest.raises(UserError, match=r"mixture_search.constraints: .*below min_weight for crossfit"):
        weight_bounds(GROUPS, eps, ProposalConstraints(min_weight=0.01, max_ratio_to_eps=2))
    with pytest.raises(ValueError, match="min_weight"):
        SweepSpec.model_validate({"name": "x", "corpus": "c", "stages": [{"name": "p", "mixture_search": {
            "over": "task", "groups": ["a", "b"], "mixtures": 4, "constraints": {"min_weight": 0.6}}}]})


def search_spec(corpus, groups, over="category", mixtures=6) -> SweepSpec:
    return SweepSpec.model_validate({
        "name": "search", "corpus": str(corpus),
        "base": {"model": {"name": "tiny-llama"}, "mixture": {"tasks": "all", "eps": 64, "max_length": 128},
                 "train": {"max_steps": 1}},
        "stages": [{"name": "proxies", "mixture_search": {"over": over, "groups": groups, "mixtures": mixtures,
                                                          "seed": 5, "ridge_alpha": 1e-3, "min_fitted": 4}},
                   {"name": "proposed", "proposed_from": "proxies",
                    "cells": [{"name": "proxy"}, {"name": "target", "set": {"train.max_steps": 3}}]}]})


def test_a_spec_expands_into_proxies_and_one_proposed_trial_per_scale(tmp_path):
    spec = search_spec(tmp_path, ["a", "b", "c"], mixtures=3)
    trials = expand_spec(spec, str(tmp_path / "sweep"), str(tmp_path), "spec.yaml")
    assert [t.name for t in trials] == ["proxies-eps", "proxies-m000", "proxies-m001", "proxies-m002",
                                        "proposed-proxy", "proposed-target"]
    assert [t.labels["mixture_point"] for t in trials] == ["eps", "m000", "m001", "m002", "proposed", "proposed"]
    assert trials[0].config.mixture.category_proportions is None
    draws = draw_mixtures(["a", "b", "c"], 3, 1.0, seed=5)
    assert [t.config.mixture.category_proportions for t in trials[1:4]] == draws
    assert [t.proposal_of for t in trials] == [None] * 4 + ["proxies", "proxies"]
    assert trials[5].config.train.max_steps == 3 and trials[5].labels["cell"] == "target"
    with pytest.raises(ValueError, match="proposed_from: 'nope' is not an earlier stage with mixture_search"):
        SweepSpec.model_validate(spec.model_dump() | {"stages": [spec.stages[1].model_dump() | {"proposed_from": "nope"}]})


def test_proposed_trials_wait_until_every_proxy_has_finished_however():
    queue = TrialQueue([QueuedTrial("pre", None, 1), QueuedTrial("p0", None, 5), QueuedTrial("p1", "pre", 5),
                        QueuedTrial("p2", None, 5), QueuedTrial("best", None, 9, after=("p0", "p1", "p2"))])
    assert [queue.pop() for _ in range(4)] == ["pre", "p0", "p2", None]  # pre first: p1 and best wait behind it
    queue.completed("p0")
    queue.failed("p2")
    assert queue.pop() is None  # p1 still waits for pre
    assert queue.failed("pre") == ["p1"]  # dropped: finished as far as `best` is concerned
    assert queue.pop() == "best" and queue.exhausted
    resumed = TrialQueue([QueuedTrial("p2", None, 5), QueuedTrial("best", None, 9, after=("p0", "p1", "p2"))],
                         done={"p0"})  # p1 finished in an earlier run without completing: not queued
    assert resumed.pop() == "p2" and resumed.pop() is None
    resumed.completed("p2")
    assert resumed.pop() == "best"


def result(trial: str, score: float | None) -> TrialResult:
    return TrialResult(trial=trial, stage="proxies", labels={}, metrics={} if score is None else {"eval/combined": score},
                       train_time_s=1, train_tokens=1, train_examples=1, hf_model_dir=None, finished="now",
                       trial_wall_s=1)


def test_a_proposal_on_the_sample_corpus_from_a_planted_scorer(sample_corpus, tmp_path):
    manifest = Corpus.open(sample_corpus).manifest
    train = manifest[manifest["split"] == "train"]
    groups = sorted(train["category"].unique())[:4]
    spec = search_spec(sample_corpus, groups, mixtures=12)
    trials = expand_spec(spec, str(tmp_path / "sweep"), str(sample_corpus), "spec.yaml")
    proxies = [t for t in trials if t.stage == "proxies"]
    # a draw's plan on the corpus gives exactly the drawn category shares (other categories left out)
    assert group_shares(plan_mixture(proxies[1].config.mixture, manifest), "category") == pytest.approx(
        proxies[1].config.mixture.category_proportions)
    planted = PLANTED[:4]
    mixtures = [proxies[0].config.mixture] + [t.config.mixture for t in proxies[1:]]
    scores = planted_score([{g: s for g, s in zip(GROUPS, [m.category_proportions[c] for c in groups])}
                            for m in mixtures[1:]], planted)
    results = {t.name: result(t.name, score) for t, score in zip(proxies[1:], scores)}
    results[proxies[0].name] = result(proxies[0].name, None)  # the EPS proxy failed: fitted without it
    search = spec.stages[0].mixture_search
    proposal = make_proposal("proxies", search, proxies, results, manifest)
    assert proposal["fitted"] == 12 and proposal["points"][0]["score"] is None
    assert [proposal["coefficients"][g] for g in groups] == pytest.approx(planted.tolist(), abs=0.01)
    assert proposal["loo_spearman"] > 0.99
    weights = proposal["proposed_weights"]
    assert set(weights) == set(groups) and sum(weights.values()) == pytest.approx(1.0)
    assert min(weights.values()) >= search.constraints.min_weight - 1e-9
    assert proposal["predicted_proposed"] >= max(scores) - 1e-6
    assert make_proposal("proxies", search, proxies, results, manifest) == proposal  # deterministic
    too_few = {name: result(name, None) for name in results}
    with pytest.raises(UserError, match="0 of 13 proxy trials completed .*min_fitted asks for 4"):
        make_proposal("proxies", search, proxies, too_few, manifest)


def test_bad_groups_fail_before_anything_runs(sample_corpus, tmp_path):
    from imlsweep.sweep.checks import check_sweep
    from imlsweep.sweep.sweep import build_sweep

    spec = search_spec(sample_corpus, ["Sentiment Analysis", "Sentiment Anlysis"], over="category", mixtures=3)
    sweep = build_sweep(spec, "spec.yaml", str(tmp_path / "sweep"))
    problems = check_sweep(sweep, Corpus.open(sample_corpus))
    assert [(p.key, p.value, p.trial, p.trials) for p in problems] == [
        ("mixture.category_proportions", "Sentiment Anlysis", "proxies-m000", 3)]
    assert "did you mean 'Sentiment Analysis'" in problems[0].message
    with pytest.raises(ConfigError):
        from imlsweep.sweep.checks import require_valid
        require_valid(sweep, Corpus.open(sample_corpus))


def test_plan_counts_the_proposal_as_one_mixture_times_its_scales(tmp_path):
    from imlsweep.sweep.plan import format_plan, plan_summary
    from imlsweep.sweep.sweep import open_spec

    summary = plan_summary(open_spec(SWEEPS / "mixture_search.yaml", str(tmp_path)))
    assert summary["trials_by_stage"] == {"proxies": 49, "proposed": 2, "eps_target": 1}
    assert summary["proposed"] == {"proposed": {"from": "proxies", "mixtures": 1, "scales": ["proxy", "target"]}}
    text = format_plan(summary)
    assert "proxies: 49 trials: 48 Dirichlet mixtures over 7 benchmark groups + the EPS mixture" in text
    assert "proposed: 2 trials: 1 proposed mixture (of proxies, made when it has finished) x 2 scales (proxy, target)" in text


def test_the_driver_hands_the_proposal_to_each_proposed_trial_once_the_proxies_have_finished(sample_corpus, tmp_path):
    from imlsweep.sweep.driver import sweep_queue
    from imlsweep.sweep.estimate import Estimator
    from imlsweep.sweep.proposal import MixtureProposals, read_proposal
    from imlsweep.sweep.scheduling import SweepSearcher
    from imlsweep.sweep.state import trial_files
    from imlsweep.sweep.sweep import build_sweep
    from imlsweep.sweep.trainable import SweepContext

    manifest = Corpus.open(sample_corpus).manifest
    groups = sorted(manifest[manifest["split"] == "train"]["category"].unique())[:3]
    sweep = build_sweep(search_spec(sample_corpus, groups, mixtures=4), "spec.yaml", str(tmp_path / "sweep"))
    proxies = sweep.stage_trials("proxies")
    queue, entries = sweep_queue(sweep, sweep.trials, trial_files(sweep.uri), Estimator(sweep.spec))
    logged, dropped = [], []
    searcher = SweepSearcher(queue, entries, {}, on_dropped=lambda *names: dropped.append(names),
                             proposals=MixtureProposals(sweep, logged.append))
    handed = [searcher.suggest(f"t{i}") for i in range(5)]
    assert [config["trial"] for config in handed] == [t.name for t in proxies]
    assert searcher.suggest("t5") is None  # the proposed trials wait for every proxy
    for index, trial in enumerate(proxies):
        if index:  # the EPS proxy fails; the rest complete with a planted score
            weights = trial.config.mixture.category_proportions
            sweep.trial_dir(trial.name).write_result(result(trial.name, planted_score(
                [dict(zip(GROUPS, (weights[g] for g in groups)))], PLANTED[:3])[0]))
        searcher.on_trial_complete(f"t{index}", {"trial_completed": 1} if index else None, error=not index)
    first, second = searcher.suggest("t5"), searcher.suggest("t6")
    proposal = read_proposal(sweep.uri, "proxies")
    assert [first["trial"], second["trial"]] == ["proposed-target", "proposed-proxy"]  # the longer one first
    assert first["params"] == second["params"] == {"mixture.benchmark_proportions": None, "mixture.task_proportions": None,
                                                   "mixture.category_proportions": proposal["proposed_weights"]}
    assert proposal["fitted"] == 4 and "proposed mixture from 4 proxies" in logged[0]
    context = SweepContext(sweep="search", sweep_dir=sweep.uri, spec=sweep.spec, trials=sweep.trials_by_name,
                           in_process=True)
    trained = context.trial(first)
    assert trained.config.mixture.category_proportions == proposal["proposed_weights"]
    assert trained.config.train.max_steps == 3 and trained.labels == {"cell": "target", "mixture_point": "proposed"}
    assert searcher.suggest("t7") == "FINISHED" and dropped == []
