"""ROUGE-L and exact match exactly as the official Super-NaturalInstructions scorer computes them.

The official scorer (natural-instructions `eval/automatic/evaluation.py`) uses Google's rouge-score
ROUGE-L F-measure with Porter stemming and an exact match after lower-casing, removing punctuation
and collapsing whitespace (articles kept), each the maximum over all references. Here each text is
tokenized once (not once per reference pair) and the LCS is computed on the cached tokens; the
results are the same numbers.
"""

from __future__ import annotations

import string
from functools import lru_cache
from typing import Callable, Sequence

from rouge_score import tokenizers

_PUNCTUATION = frozenset(string.punctuation)
_STEMMING_TOKENIZER = tokenizers.DefaultTokenizer(use_stemmer=True)


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation without removing articles (the SuperNI variant)."""
    lowered = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(lowered.split())


@lru_cache(maxsize=65536)
def rouge_tokens(text: str) -> tuple[str, ...]:
    """rouge-score's default tokens: lower-case, non-alphanumerics to spaces, Porter stems."""
    return tuple(_STEMMING_TOKENIZER.tokenize(text))


def lcs_length(first: Sequence[str], second: Sequence[str]) -> int:
    """Length of the longest common subsequence, one DP row at a time."""
    if len(second) > len(first):
        first, second = second, first
    previous = [0] * (len(second) + 1)
    for token in first:
        current = [0]
        for j, other in enumerate(second, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l_tokens(prediction: Sequence[str], reference: Sequence[str]) -> float:
    if not prediction or not reference:
        return 0.0
    common = lcs_length(reference, prediction)
    if common == 0:
        return 0.0
    precision = common / len(prediction)
    recall = common / len(reference)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, references: Sequence[str],
            tokenize: Callable[[str], Sequence[str]] = rouge_tokens) -> float:
    """ROUGE-L F1 in [0, 1], the maximum over references (the official scorer's `rouge`).
    `tokenize` replaces rouge-score's stemming tokenizer (the xlingual track uses GPT-2 tokens)."""
    _check_references(references)
    predicted = tokenize(prediction)
    return max(rouge_l_tokens(predicted, tokenize(reference)) for reference in references)


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised reference, else 0.0."""
    _check_references(references)
    predicted = normalize_answer(prediction)
    return float(any(predicted == normalize_answer(reference) for reference in references))


def _check_references(references: Sequence[str]) -> None:
    # The official scorer takes max() over references, which fails on an empty list.
    if isinstance(references, str) or len(references) == 0:
        raise ValueError("references must be a non-empty list of strings")
