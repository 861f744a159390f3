"""Packing tokenized examples into fixed-length rows for decoder-only training ("label-loss").

An example is source ids + target ids + EOS with a `loss_start`: labels are -100 before it (the
source), so the loss is on the target only; plain-text add-ons train on the whole sequence
(loss_start 0). A window of examples travels as one flat int32 array plus offsets.

Rows are filled one at a time, longest example first, with a pair of examples for each row's last
place (`assign_rows`): on SuperNI-like lengths that leaves about 0.1% of a window's token slots empty,
where best-fit decreasing leaves about 1%. The rows are then shuffled with the seed so that long and
short documents mix across batches. A packed row is stored compactly (its ids plus
each document's length and loss start) and expanded by `unpack_rows` on the training worker into
PACKED_COLUMNS: `position_ids` restart per document and `document_ids` number the documents of a row
(-1 on padding) so the trainer can build a block-causal mask. Restarted position ids alone do not keep
documents apart under sdpa attention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

IGNORE_INDEX = -100
PACKED_COLUMNS = ("input_ids", "labels", "position_ids", "document_ids")


@dataclass(frozen=True)
class TokenizedExamples:
    """Examples as one flat int32 array: example i is values[offsets[i]:offsets[i + 1]]."""

    values: np.ndarray
    offsets: np.ndarray
    loss_starts: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def ids(self, index: int) -> np.ndarray:
        return self.values[self.offsets[index]:self.offsets[index + 1]]


def causal_examples(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], eos_id: int, max_len: int,
                    side: Literal["left", "right"] = "left", loss_on_source: bool = False) -> TokenizedExamples:
    """source + target + EOS per example, cut to max_len: left truncation keeps the end (the target and
    EOS), right keeps the beginning."""
    source_lengths = np.array([len(s) for s in sources], dtype=np.int64)
    lengths = source_lengths + [len(t) + 1 for t in targets]
    parts = [part for source, target in zip(sources, targets) for part in (source, target, (eos_id,))]
    values = np.concatenate(parts, dtype=np.int32, casting="unsafe") if parts else np.zeros(0, dtype=np.int32)
    starts = np.cumsum(lengths) - lengths
    cut = np.maximum(lengths - max_len, 0)
    loss_starts = np.zeros_like(lengths) if loss_on_source else source_lengths
    if cut.any():
        keep_from = starts + (cut if side == "left" else 0)
        values = np.concatenate([values[s:s + n] for s, n in zip(keep_from, lengths - cut)])
        if side == "left":
            loss_starts = np.maximum(loss_starts - cut, 0)
        lengths = lengths - cut
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return TokenizedExamples(values, offsets, np.minimum(loss_starts, lengths).astype(np.int32))


class LengthPool:
    """Examples not yet placed, by length: how many of each length, and their indices (earliest first)."""

    def __init__(self, lengths: np.ndarray, max_len: int):
        self.count = np.bincount(lengths, minlength=max_len + 1)
        order = np.lexsort((-np.arange(len(lengths)), lengths))  # by length, latest index first
        self.indices = [list(group) for group in np.split(order, np.cumsum(self.count)[:-1])]

    def fitting(self, room: int) -> np.ndarray:
        """The distinct lengths left that fit in `room`, ascending."""
        return np.flatnonzero(self.count[: room + 1])

    def best_pair(self, room: int, better_than: int) -> tuple[int, int] | None:
        """Two lengths left whose sum is the largest <= room and > better_than; of those, the most even
        pair, so the shortest examples stay for the rows still to fill."""
        present = self.count[: room + 1] > 0
        for total in range(room, better_than, -1):
            smaller = np.flatnonzero(present[1: total // 2 + 1] & present[total - 1: (total - 1) // 2: -1]) + 1
            for a in smaller[::-1]:
                if a != total - a or self.count[a] >= 2:
                    return int(a), int(total - a)
        return None

    def take(self, length: int) -> int:
        self.count[length] -= 1
        return int(self.indices[length].pop())


def assign_rows(lengths: Sequence[int], max_len: int) -> list[list[int]]:
    """Example indices per row (each row's members in input order), rows filled one at a time: the
    longest example left, then the longest that still fits, until the next one would be the row's last.
    That last place goes to the pair of examples that fills the row best when it beats the single
    longest: gaps shorter than any example are what leave slots empty, and pairs close them."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) and lengths.max() > max_len:
        index = int(lengths.argmax())
        raise ValueError(f"example {index} has {lengths[index]} tokens, more than max_len {max_len}: truncate first")
    pool = LengthPool(lengths, max_len)
    rows: list[list[int]] = []
    while pool.count.any():
        room, members = max_len, []
        while len(fits := pool.fitting(room)):
            longest = int(fits[-1])
            last_place = room - longest < fits[0]  # nothing else would fit after it
            if last_place and (pair := pool.best_pair(room, better_than=longest)):
                members += [pool.take(length) for length in pair]
                room -= sum(pair)
            else:
                members.append(pool.take(longest))
                room -= longest
        rows.append(sorted(members))
    return rows


def pack_rows(examples: TokenizedExamples, max_len: int, pad_id: int,
              rng: np.random.Generator | None = None) -> dict[str, object]:
    """Examples -> compact rows: input_ids [rows, max_len] int32 (padded), and per row the
    document_lengths and loss_starts of its documents in input order. `rng` shuffles the rows."""
    rows = assign_rows(examples.lengths, max_len)
    if rng is not None:
        rows = [rows[i] for i in rng.permutation(len(rows))]
    input_ids = np.full((len(rows), max_len), pad_id, dtype=np.int32)
    for row, members in enumerate(rows):
        tokens = np.concatenate([examples.ids(i) for i in members])
        input_ids[row, : len(tokens)] = tokens
    lengths = examples.lengths
    return {"input_ids": input_ids,
            "document_lengths": [lengths[members].astype(np.int32) for members in rows],
            "loss_starts": [examples.loss_starts[members] for members in rows]}


def unpack_rows(compact: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Compact rows (`pack_rows`' columns, or a batch of the Dataset's) -> int64 arrays [rows, max_len] of
    PACKED_COLUMNS. Each row's padding is treated as one more document (number -1, never trained), so
    every column is one `np.repeat` over the batch."""
    input_ids, document_lengths = compact["input_ids"], compact["document_lengths"]
    rows, max_len = input_ids.shape
    per_row = np.array([len(lengths) for lengths in document_lengths], dtype=np.int64)
    lengths = np.concatenate([*document_lengths, np.zeros(0, np.int64)]).astype(np.int64)
    first_trained = np.concatenate([*compact["loss_starts"], np.zeros(0, np.int64)]).astype(np.int64)
    row_ends = np.cumsum(per_row)
    used = np.bincount(np.repeat(np.arange(rows), per_row), weights=lengths, minlength=rows).astype(np.int64)
    numbers = np.arange(len(lengths)) - np.repeat(row_ends - per_row, per_row)
    lengths = np.insert(lengths, row_ends, max_len - used)
    numbers = np.insert(numbers, row_ends, -1)
    first_trained = np.insert(first_trained, row_ends, max_len)
    positions = np.arange(rows * max_len) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    document_ids = np.repeat(numbers, lengths).reshape(rows, max_len)
    trained = (positions >= np.repeat(first_trained, lengths)).reshape(rows, max_len)
    ids = input_ids.astype(np.int64)
    return {"input_ids": ids, "labels": np.where(trained, ids, IGNORE_INDEX),
            "position_ids": np.where(document_ids >= 0, positions.reshape(rows, max_len), 0),
            "document_ids": document_ids}


def pack_examples(examples: TokenizedExamples, max_len: int, pad_id: int,
                  rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """Examples packed in memory, as the trainer sees them: int64 arrays of PACKED_COLUMNS."""
    return unpack_rows(pack_rows(examples, max_len, pad_id, rng))


def packing_efficiency(document_ids: np.ndarray) -> float:
    """Non-padding tokens / token slots."""
    return float((document_ids >= 0).sum() / document_ids.size) if document_ids.size else 0.0
