"""Estimates from the corpus: examples from the mixture plan, tokens measured as the pipeline tokenizes,
evaluation items from the eval split, seconds from the spec's throughput."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

from imlsweep.corpus.store import Corpus
from imlsweep.data.pipeline import PACK_WINDOW, tokenize_sources, window_starts
from imlsweep.data.plan import plan_mixture
from imlsweep.data.stream import source_items
from imlsweep.data.token_cache import default_location
from imlsweep.sweep.estimate import Estimator
from imlsweep.sweep.plan import plan_summary
from imlsweep.sweep.sweep import open_spec
from quickstart_spec import quickstart_copy


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory, sample_corpus):
    """sweeps/quickstart.yaml on the session's sample corpus, and an estimator measuring on it."""
    tmp_path = tmp_path_factory.mktemp("quickstart")
    sweep = open_spec(quickstart_copy(tmp_path, sample_corpus), str(tmp_path))
    return sweep, Estimator(sweep.spec, Corpus.open(sample_corpus))


def pipeline_tokens(config, corpus_dir) -> int:
    """Tokens of one pass over the trial's stream, as the training pipeline's tokenizing step makes them."""
    plan = plan_mixture(config.mixture, Corpus.open(corpus_dir).manifest)
    total = 0
    for item in source_items(plan, config.mixture):
        batch = {key: [value] for key, value in item.items()}
        table = tokenize_sources(batch, plan=plan, mixture=config.mixture, corpus_dir=str(corpus_dir),
                                 tokenizer_name=config.model.tokenizer_name, model_kind="causal",
                                 window_starts=window_starts(plan.total_examples, PACK_WINDOW),
                                 cache=default_location(str(corpus_dir)))
        total += int(pc.sum(pc.list_value_length(table["input_ids"])).as_py())
    return total


def test_tokens_are_the_pipelines(quickstart, sample_corpus):
    """Up to 16 distinct draws per task every draw is measured: the estimate is exact; beyond, a seeded
    sample of draws stays within a few percent."""
    sweep, estimator = quickstart
    for name, tolerance in [("single_task-inst_8-task828-r0", 0), ("multi_task-plain_16-r0", 0),
                            ("single_task-inst_all-task828-r0", 0.05), ("multi_task-inst_all-r0", 0.05)]:
        config = sweep.trials_by_name[name].config
        estimate = estimator.trial(config)
        epochs = config.train.epochs
        assert estimate.examples == plan_mixture(config.mixture, estimator.corpus.manifest).total_examples * epochs
        assert estimate.tokens == pytest.approx(pipeline_tokens(config, sample_corpus) * epochs, rel=tolerance), name


def test_same_spec_same_estimate(quickstart, sample_corpus):
    sweep, estimator = quickstart
    again = Estimator(sweep.spec, Corpus.open(sample_corpus))
    for trial in sweep.trials:
        assert estimator.trial(trial.config) == again.trial(trial.config)


def test_eval_items_and_seconds(quickstart):
    sweep, estimator = quickstart
    config = sweep.trials_by_name["multi_task-inst_8-r0"].config
    manifest = estimator.corpus.manifest.set_index("task_id")
    expected_items = sum(min(config.eval.max_per_task, manifest.loc[task, "n_test"]) for task in config.eval.tasks)
    estimate = estimator.trial(config)
    assert estimate.eval_items == expected_items > 0
    figures = sweep.spec.estimate
    assert estimate.seconds == pytest.approx(figures.startup_s + estimate.tokens / figures.cpu_tokens_per_s
                                             + expected_items / figures.eval_items_per_s)


def test_max_steps_trains_full_packed_rows(quickstart):
    sweep, estimator = quickstart
    config = sweep.trials_by_name["multi_task-inst_8-r0"].config.model_copy(deep=True)
    config.train.max_steps, config.train.epochs = 7, None
    assert estimator.trial(config).tokens == 7 * config.train.rows_per_step * config.mixture.max_length
    # a validation of 2 instances of each eval task every 3 steps and after the last: at 3, 6 and 7
    evaluation = config.eval.model_copy(deep=True, update={"every_steps": 3})
    evaluation.validation.max_per_task = 2
    validating = config.model_copy(update={"eval": evaluation})
    manifest = estimator.corpus.manifest.set_index("task_id")
    per_validation = sum(min(2, manifest.loc[task, "n_validation"]) for task in config.eval.tasks)
    assert per_validation > 0
    assert estimator.trial(validating).eval_items == estimator.trial(config).eval_items + 3 * per_validation
    config.model.name, config.mixture.pack_seq2seq = "tiny-t5", True  # packed pairs: rows as full as the source row
    assert estimator.trial(config).tokens == 7 * config.train.rows_per_step * config.mixture.max_source_length


def test_plan_of_the_quickstart_is_measured(quickstart):
    """The figures `sweep plan sweeps/quickstart.yaml` prints: 36 trials of a tiny model, ~1.2e4 examples,
    not the 1e8 tokens of spec constants."""
    sweep, estimator = quickstart
    summary = plan_summary(sweep, estimator=estimator)
    assert summary["estimated_from"] == "corpus" and summary["not_measured"] == []
    assert summary["train_examples"] == sum(estimator.trial(t.config).examples for t in sweep.trials)
    assert 1e5 < summary["train_tokens"] < 2e6
    assert summary["gpu_hours"] == 0 and 0 < summary["trial_hours"] < 1


def test_without_a_corpus_the_spec_figures_stand_in(quickstart):
    sweep, _ = quickstart
    estimator = Estimator(sweep.spec)
    config = sweep.trials_by_name["multi_task-inst_8-r0"].config
    figures = sweep.spec.estimate.without_corpus
    estimate = estimator.trial(config)
    assert estimate.examples == 8 * 2 * config.train.epochs
    assert estimate.tokens == estimate.examples * figures.tokens_per_example
    assert estimate.eval_items == 2 * config.eval.max_per_task
    assert not np.isnan(estimate.seconds)


def test_simulation_sleeps_for_the_corpus_estimates(quickstart):
    """`sweep simulate` holds each trial for the plan's estimate from the built corpus, and its lower bound
    is the longest chain of those (here: the quickstart's longest trial, none depends on another)."""
    from imlsweep.sweep.simulate import lower_bound, trial_durations

    sweep, estimator = quickstart
    durations = trial_durations(sweep, estimator)
    assert set(durations) == {trial.name for trial in sweep.trials}
    name = "multi_task-inst_all-r0"
    assert durations[name] == pytest.approx(estimator.trial(sweep.trials_by_name[name].config).seconds)
    assert durations != trial_durations(sweep, Estimator(sweep.spec))  # the spec's figures alone differ
    bound = lower_bound(sweep, total_gpus=1e9, durations=durations)
    assert bound["lower_bound_s"] == bound["critical_path_s"] == pytest.approx(max(durations.values()))
