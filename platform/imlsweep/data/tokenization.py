"""Tokenizing prompts: the part shared by a task's examples is encoded once and spliced in.

Splicing is exact when a text is cut after its last non-space character: byte-level BPE
pre-tokenizers always break between a non-space and a space, and merges never cross that break.
`splices_exactly` checks a tokenizer on probe strings; one that fails (e.g. SentencePiece, which
marks word starts) gets whole sources tokenized and counted instead.

The same cut makes token counts additive: the count of "a" + "b" is the count of a's head plus the
count of a's trailing whitespace + "b". So superni_def_pos's length rule, which counts many strings
made of the same task-level pieces, costs a dictionary lookup per piece instead of a tokenizer call.
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
    """Ids without special tokens; a fast tokenizer's backend is called directly, without offsets."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [encoding.ids for encoding in backend.encode_batch_fast(list(texts), add_special_tokens=False)]


@lru_cache(maxsize=8)
def splices_exactly(tokenizer: PreTrainedTokenizerBase) -> bool:
    for shared, own in SPLICE_PROBES:
        cut = splice_point(shared)
        whole, head, tail = token_ids(tokenizer, [shared + own, shared[:cut], shared[cut:] + own])
        if head + tail != whole:
            return False
    return True


def segments(pieces: Sequence[str]) -> tuple[list[str], str]:
    """The concatenation of `pieces` cut after each piece's last non-space character (each piece's
    trailing whitespace moves to the front of the next): the cut texts, and the whitespace left at the
    end. The ids of the cut texts, joined, are the ids of the whole when what follows starts with that
    whitespace."""
    cut_pieces, carry = [], ""
    for piece in pieces:
        text = carry + piece
        cut = splice_point(text)
        if cut:
            cut_pieces.append(text[:cut])
        carry = text[cut:]
    return cut_pieces, carry


class PromptTokenizer:
    """Encodes prompts to (source ids, target ids), without special tokens (the caller adds EOS), and
    counts tokens. Every text it tokenizes is remembered, so a task's shared parts are tokenized once
    and an example's own part once, whether it is first counted (length rule) or encoded.
    Make one per task: it keeps that task's texts."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.tokenizer = tokenizer
        self.splice = splices_exactly(tokenizer)
        self.ids: dict[str, list[int]] = {}
        # the length rule counts the same task-level pieces before every example's own: counted once
        self.prefix_counts: dict[tuple[str, ...], tuple[int, str]] = {}

    def remember(self, texts: Sequence[str]) -> None:
        """Tokenize the texts not seen yet in one batched call."""
        new = sorted({t for t in texts if t not in self.ids})
        self.ids.update(zip(new, token_ids(self.tokenizer, new)))

    def remember_segments(self, texts: Sequence[str]) -> None:
        """A task's per-example segments that `count_tokens` will be asked for, in one batch (a
        tokenizer that does not splice counts whole strings, so there is nothing to prepare)."""
        if self.splice:
            self.remember(texts)

    def text_ids(self, text: str) -> list[int]:
        if text not in self.ids:
            self.remember([text])
        return self.ids[text]

    def count_tokens(self, pieces: Sequence[str]) -> int:
        """Tokens of the concatenated pieces: summed over their `segments` when splicing is exact (the
        pieces before the last are counted once per distinct sequence)."""
        if not self.splice:
            return len(self.text_ids("".join(pieces)))
        prefix = tuple(pieces[:-1])
        if prefix not in self.prefix_counts:
            cut_pieces, carry = segments(prefix)
            self.remember(cut_pieces)
            self.prefix_counts[prefix] = sum(len(self.ids[text]) for text in cut_pieces), carry
        counted, carry = self.prefix_counts[prefix]
        last = carry + (pieces[-1] if pieces else "")
        return counted + (len(self.text_ids(last)) if last else 0)

    def encode(self, prompts: Sequence[Prompt]) -> tuple[list[list[int]], list[list[int]]]:
        return self.encode_sources(prompts), token_ids(self.tokenizer, [p.target for p in prompts])

    def encode_sources(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        if not self.splice:
            return token_ids(self.tokenizer, [p.source for p in prompts])
        heads = [p.shared[: splice_point(p.shared)] for p in prompts]
        tails = [p.source[len(h):] for p, h in zip(prompts, heads)]
        self.remember(heads + tails)
        return [self.ids[h] + self.ids[t] for h, t in zip(heads, tails)]
