"""The package's ROUGE-L and exact match equal the official SuperNI scorer's on real SuperNI outputs."""

import json
import random

import pytest

from imlsweep.eval.metrics import exact_match, lcs_length, normalize_answer, rouge_l

HANDMADE = [
    # (prediction, references): punctuation, articles, case, unicode, stemming, empty sides
    ("The cat sat.", ["the cat sat", "a dog"]),
    ("  Yes!!  ", ["yes"]),
    ("an apple", ["apple"]),
    ("Café crème brûlée", ["cafe creme brulee", "Café crème brûlée."]),
    ("naïve façade — “quoted”", ["naive facade quoted"]),
    ("running runs ran", ["run running runner"]),
    ("東京は日本の首都です", ["東京は日本の首都です"]),
    ("", ["something"]),
    ("something", [""]),
    ("!!!", ["..."]),
    ("1,000 people", ["1000 people", "one thousand people"]),
    ("Entailment", ["entailment"]),
]


def superni_pairs(superni_dir, per_task=6, seed=0):
    """Predictions that are other instances' outputs, perturbed references or partial references,
    scored against the real (often several) references of SuperNI instances."""
    rng = random.Random(seed)
    pairs = []
    for path in sorted((superni_dir / "tasks").glob("*.json")):
        instances = json.loads(path.read_text(encoding="utf-8"))["Instances"][:per_task]
        for index, instance in enumerate(instances):
            references = instance["output"]
            other = instances[(index + 1) % len(instances)]["output"][0]
            words = rng.choice(references).split()
            pairs += [
                (other, references),
                (" ".join(words[: max(1, len(words) // 2)]), references),
                (rng.choice(references).upper() + " !", references),
                (instance["input"][:80], references),
            ]
    return pairs


def test_rouge_and_exact_match_equal_the_official_scorer(superni_dir, official):
    pairs = superni_pairs(superni_dir) + HANDMADE
    assert len(pairs) > 600 and any(len(refs) > 1 for _, refs in pairs)
    for prediction, references in pairs:
        expected_rouge = official.metric_max_over_ground_truths(official.rouge, prediction, references)
        expected_em = official.metric_max_over_ground_truths(official.exact_match, prediction, references)
        assert rouge_l(prediction, references) == pytest.approx(expected_rouge, abs=1e-6), (prediction, references)
        assert exact_match(prediction, references) == float(expected_em), (prediction, references)


def test_metrics_discriminate():
    assert exact_match("The cat sat.", ["the  cat sat"]) == 1.0
    assert exact_match("cat sat", ["the cat sat"]) == 0.0  # articles are kept
    assert normalize_answer("  A, b;  C! ") == "a b c"
    assert rouge_l("the cat sat", ["the cat sat"]) == 1.0
    assert 0.0 < rouge_l("the cat sat on the mat", ["a cat on a mat"]) < 1.0
    assert rouge_l("", ["x"]) == 0.0
    assert lcs_length("abcbdab", "bdcaba") == 4


def test_empty_reference_list_is_an_error():
    with pytest.raises(ValueError, match="non-empty"):
        rouge_l("x", [])
    with pytest.raises(ValueError, match="non-empty"):
        exact_match("x", "x")
