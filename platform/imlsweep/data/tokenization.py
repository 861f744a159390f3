"""Tokenizing prompts: the part shared by a task's examples is encoded once and spliced in.

Splicing is exact when the shared part is cut after its last non-space character: byte-level BPE
pre-tokenizers always break between a non-space and a space, and merges never cross that break.
`splices_exactly` checks a tokenizer on probe strings; one that fails (e.g. SentencePiece, which
marks word starts) gets whole sources tokenized instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from transformers import PreTrainedTokenizerBase

from imlsweep.data.encodings import Prompt

SPLICE_PROBES = [
    ("Definition: Decide whether the review is positive.\n\n Positive Example 1 -\nInput: Great film.\n Output: "
     "positive.\n\n", "Now complete the following example -\nInput: It was dull.\nOutput: "),
    ("Answer the question:\n\n", "What is 2 + 2?\nAnswer:"),
    ("Translate to French.  ", "  Hello, world!\tOK"),
]


def splice_point(shared: str) -> int:
    return len(shared.rstrip())


def token_ids(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []


@lru_cache(maxsize=8)
def splices_exactly(tokenizer: PreTrainedTokenizerBase) -> bool:
    for shared, own in SPLICE_PROBES:
        cut = splice_point(shared)
        whole, head, tail = token_ids(tokenizer, [shared + own, shared[:cut], shared[cut:] + own])
        if head + tail != whole:
            return False
    return True


class PromptTokenizer:
    """Encodes prompts to (source ids, target ids), without special tokens (the caller adds EOS).
    Each distinct shared part among the prompts of one `encode` call (a task's) is tokenized once.
    Make one per task: it remembers the token counts it is asked for."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.tokenizer = tokenizer
        self.splice = splices_exactly(tokenizer)
        self.counts: dict[str, int] = {}

    def remember_counts(self, texts: Sequence[str]) -> None:
        """Count many texts in one batched call (a task's per-example parts), for `count_tokens`."""
        new = sorted({t for t in texts if t not in self.counts})
        self.counts.update(zip(new, (len(ids) for ids in token_ids(self.tokenizer, new))))

    def count_tokens(self, text: str) -> int:
        """Token count, remembered: a task's shared part is counted once, not once per example."""
        if text not in self.counts:
            self.counts[text] = len(token_ids(self.tokenizer, [text])[0])
        return self.counts[text]

    def encode(self, prompts: Sequence[Prompt]) -> tuple[list[list[int]], list[list[int]]]:
        targets = token_ids(self.tokenizer, [p.target for p in prompts])
        if not self.splice:
            return token_ids(self.tokenizer, [p.source for p in prompts]), targets
        heads = [p.shared[: splice_point(p.shared)] for p in prompts]
        distinct = sorted(set(heads))
        shared_ids = dict(zip(distinct, token_ids(self.tokenizer, distinct)))
        tails = token_ids(self.tokenizer, [p.source[len(h):] for p, h in zip(prompts, heads)])
        return [shared_ids[h] + t for h, t in zip(heads, tails)], targets
