"""Tokenizing prompts: texts are cut into chunks whose ids join exactly, and each distinct chunk is
tokenized once per process.

A byte-level BPE pre-tokenizer always breaks between a non-space character and a whitespace one, and
its merges never cross a break: cut a text before every whitespace run that follows a non-space
character (`CHUNK`: a chunk is a word with the whitespace before it) and the ids of the chunks, joined,
are the ids of the text. `splices_exactly` checks a tokenizer on probe strings; one that fails (e.g.
SentencePiece, which marks word starts) gets whole texts tokenized instead.

A corpus repeats its words and its templates' text, so most chunks of an example were seen before: their
ids come from a memo (`chunk_memo`, per tokenizer and process) and only new chunks reach the tokenizer,
in one batch per call. On SuperNI-like examples this is about a fifth of the time the tokenizer takes on
the same texts. The part a task's examples share (definition, demonstrations) is cut off at its last
non-space character, tokenized once per task and spliced in front of each example's own part.

The same cut makes token counts additive: the count of "a" + "b" is the count of a's head plus the
count of a's trailing whitespace + "b". So superni_def_pos's length rule, which counts many strings
made of the same task-level pieces, costs a lookup per piece instead of a tokenizer call.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING


from imlsweep.data.encodings import Prompt

if TYPE_CHECKING:  # imported where a tokenizer is loaded: a segment reading only the cache loads none
    from transformers import PreTrainedTokenizerBase

SPLICE_PROBES = [
    ("Definition: Decide whether the review is positive.\n\n Positive Example 1 -\nInput: Great film.\n Output: "
     "positive.\n\n", "Now complete the following example -\nInput: It was dull.\nOutput: "),
    ("Answer the question:\n\n", "What is 2 + 2?\nAnswer:"),
    ("Translate to French.  ", "  Hello, world!\tOK"),
    ("", "It's 3.50\u00a0$ (naïve café) — don't\u2009stop;  x=[1, 2]\r\n\tdone?! "),
]
# Whitespace as the tokenizers' pre-tokenizer patterns mean it (\s of Rust's regex: Unicode White_Space);
# Python's own \s and str.strip also take \x1c-\x1f, which a pattern may glue to punctuation before them.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
_SPACE = re.escape(WHITESPACE)
CHUNK = re.compile(f"[{_SPACE}]*[^{_SPACE}]+|[{_SPACE}]+")
# Distinct chunks a process keeps per tokenizer (a few hundred bytes each); the memo starts over when full.
CHUNK_MEMO_SIZE = 1 << 18
CHUNK_MEMO_LOCK = threading.Lock()  # a thread must not see the memo start over between its update and lookups


def splice_point(shared: str) -> int:
    """Where a task's shared part is cut from what follows it: after its last non-space character."""
    return len(shared.rstrip(WHITESPACE))


def token_ids(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """Ids without special tokens; a fast tokenizer's backend is called directly, without offsets."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [encoding.ids for encoding in backend.encode_batch_fast(list(texts), add_special_tokens=False)]


def joined(parts: Iterable[list[int]]) -> list[int]:
    return list(itertools.chain.from_iterable(parts))


@lru_cache(maxsize=8)
def splices_exactly(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer's ids of each probe equal its chunks' ids joined, and its shared part's
    ids (cut at `splice_point`) joined with the rest's."""
    for shared, own in SPLICE_PROBES:
        text, cut = shared + own, splice_point(shared)
        whole, head, tail, *chunks = token_ids(tokenizer, [text, text[:cut], text[cut:], *CHUNK.findall(text)])
        if head + tail != whole or joined(chunks) != whole:
            return False
    return True


@lru_cache(maxsize=8)
def chunk_memo(tokenizer: PreTrainedTokenizerBase) -> dict[str, list[int]]:
    """This process's ids of the chunks it has tokenized with `tokenizer` (shared by every task)."""
    return {}


def head_length(prompt: Prompt) -> int:
    """How much of the source goes with the shared part: up to its last non-space character when
    whitespace follows there (a cut between two non-space characters could split a pre-token: then
    nothing, and the whole source is cut into chunks)."""
    cut = splice_point(prompt.shared)
    after = prompt.source[cut:cut + 1]
    return cut if not after or after in WHITESPACE else 0


class PromptTokenizer:
    """Encodes prompts to (source ids, target ids), without special tokens (the caller adds EOS), and
    counts tokens. Every text it tokenizes is remembered, so a task's shared parts are tokenized once
    and an example's own part once, whether it is first counted (length rule) or encoded.
    Make one per task: it keeps that task's texts."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.tokenizer = tokenizer
        self.splice = splices_exactly(tokenizer)
        self.known: dict[str, list[int]] = {}
        # the length rule counts the same task-level pieces before every example's own: counted once
        self.prefix_counts: dict[tuple[str, ...], tuple[int, str]] = {}

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's ids, the texts not seen yet tokenized in one go (through their chunks when the
        tokenizer splices)."""
        new = sorted({t for t in texts if t not in self.known})
        if new:
            self.known.update(zip(new, self.chunked_ids(new) if self.splice else token_ids(self.tokenizer, new)))
        return [self.known[t] for t in texts]

    def chunked_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's ids joined from its chunks' ids; the chunks this process has not seen tokenized in
        one batch."""
        memo = chunk_memo(self.tokenizer)
        chunked = [CHUNK.findall(text) for text in texts]
        with CHUNK_MEMO_LOCK:
            new = {chunk for chunks in chunked for chunk in chunks if chunk not in memo}
            if len(memo) + len(new) > CHUNK_MEMO_SIZE:
                memo.clear()  # bounded: start over, with this call's chunks
                new = {chunk for chunks in chunked for chunk in chunks}
            new_chunks = sorted(new)
            memo.update(zip(new_chunks, token_ids(self.tokenizer, new_chunks)))
            return [joined(map(memo.__getitem__, chunks)) for chunks in chunked]

    def remember_segments(self, texts: Sequence[str]) -> None:
        """A task's per-example segments that `count_tokens` will be asked for, in one batch (a
        tokenizer that does not splice counts whole strings, so there is nothing to prepare)."""
        if self.splice:
            self.ids(texts)

    def count_tokens(self, pieces: Sequence[str]) -> int:
        """Tokens of the concatenated pieces: when splicing is exact, the pieces before the last are cut
        at their last non-space character and counted once per distinct sequence; the last is counted
        with the whitespace carried over."""
        if not self.splice:
            return len(self.ids(["".join(pieces)])[0])
        prefix = tuple(pieces[:-1])
        if prefix not in self.prefix_counts:
            text = "".join(prefix)
            cut = splice_point(text)
            self.prefix_counts[prefix] = len(self.ids([text[:cut]])[0]), text[cut:]
        counted, carry = self.prefix_counts[prefix]
        last = carry + (pieces[-1] if pieces else "")
        return counted + len(self.ids([last])[0])

    def encode(self, prompts: Sequence[Prompt]) -> tuple[list[list[int]], list[list[int]]]:
        return self.encode_sources(prompts), self.ids([p.target for p in prompts])

    def encode_sources(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        sources = [p.source for p in prompts]
        if not self.splice:  # every source is its example's own: nothing to remember
            return token_ids(self.tokenizer, sources)
        cuts = [head_length(p) for p in prompts]
        heads = self.ids([source[:cut] for source, cut in zip(sources, cuts)])
        tails = self.ids([source[cut:] for source, cut in zip(sources, cuts)])
        return [head + tail for head, tail in zip(heads, tails)]
