"""Fixtures of the eval tests: the official SuperNI scorer (natural-instructions
eval/automatic/evaluation.py, default track), transcribed as the reference to equal."""

import string
import types

import pytest
from rouge_score import rouge_scorer

default_rouge_scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def normalize_answer(s):
    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_punc(lower(s)))


def exact_match(prediction, ground_truth):
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def rouge(prediction, ground_truth):
    scores = default_rouge_scorer.score(prediction=prediction, target=ground_truth)
    return scores["rougeL"].fmeasure


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, ground_truth) for ground_truth in ground_truths)


def compute_metrics(predictions, references):
    assert len(predictions) == len(references)
    em, rouge_l = 0, 0
    for pred, gold in zip(predictions, references):
        assert isinstance(gold, list)
        em += metric_max_over_ground_truths(exact_match, pred, gold)
        rouge_l += metric_max_over_ground_truths(rouge, pred, gold)
    metrics = {"exact_match": 100.0 * em / len(references), "rougeL": 100.0 * rouge_l / len(references)}
    return {k: round(v, 4) for k, v in metrics.items()}


def compute_grouped_metrics(predictions, references, groups):
    examples_by_group = {}
    for pred, gold, group in zip(predictions, references, groups):
        examples_by_group.setdefault(group, []).append((pred, gold))
    results = {}
    for group, group_examples in examples_by_group.items():
        task_predictions, task_references = zip(*group_examples)
        for metric, value in compute_metrics(task_predictions, task_references).items():
            results[f"{metric}_for_{group}"] = value
    return results


@pytest.fixture(scope="session")
def official():
    """The official scorer's functions."""
    return types.SimpleNamespace(normalize_answer=normalize_answer, exact_match=exact_match, rouge=rouge,
                                 metric_max_over_ground_truths=metric_max_over_ground_truths,
                                 compute_metrics=compute_metrics, compute_grouped_metrics=compute_grouped_metrics)
