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

Encoder-decoder examples pack as pairs (`pack_seq2seq_rows`): sources side by side in an encoder row
of max_source_length, their targets in the same order in a decoder row of max_target_length;
`unpack_seq2seq_rows` numbers the documents of both rows so that each target attends to its own
source only (T5's relative position bias depends only on distances inside a document).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

IGNORE_INDEX = -100
PACKED_COLUMNS = ("input_ids", "labels", "position_ids", "document_ids")
PACKED_SEQ2SEQ_COLUMNS = ("input_ids", "source_document_ids", "labels", "target_document_ids")


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
                    side: Literal["left", "right"] = "left",
                    loss_on_source: bool | np.ndarray = False) -> TokenizedExamples:
    """source + target + EOS per example, cut to max_len: left truncation keeps the end (the target and
    EOS), right keeps the beginning. `loss_on_source`: for all examples, or per example."""
    source_lengths = np.fromiter(map(len, sources), dtype=np.int64, count=len(sources))
    lengths = source_lengths + np.fromiter(map(len, targets), dtype=np.int64, count=len(targets)) + 1
    eos = np.array([eos_id], dtype=np.int32)
    parts = [part for source, target in zip(sources, targets) for part in (source, target, eos)]
    values = np.concatenate(parts, dtype=np.int32, casting="unsafe") if parts else np.zeros(0, dtype=np.int32)
    starts = np.cumsum(lengths) - lengths
    cut = np.maximum(lengths - max_len, 0)
    loss_starts = np.where(loss_on_source, 0, source_lengths)
    if cut.any():
        keep_from = starts + (cut if side == "left" else 0)
        values = np.concatenate([values[s:s + n] for s, n in zip(keep_from, lengths - cut)])
        if side == "left":
            loss_starts = np.maximum(loss_starts - cut, 0)
        lengths = lengths - cut
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return TokenizedExamples(values, offsets, np.minimum(loss_starts, lengths).astype(np.int32))


PAIR_SCAN_STEPS = 64  # `LengthPool.best_pair`'s steps before it answers by the other way


class LengthPool:
    """Examples not yet placed, by length: how many of each length, the distinct lengths left (ascending:
    a row asks for the longest that fits thousands of times a window, so a bisection, not an array scan),
    and each length's indices (earliest first). Plain Python lists: a window asks them tens of thousands of
    small questions, each cheaper in Python than a NumPy call."""

    def __init__(self, lengths: np.ndarray, max_len: int):
        count = np.bincount(lengths, minlength=max_len + 1)
        self.count = count.tolist()
        self.present = np.flatnonzero(count).tolist()
        order = np.lexsort((-np.arange(len(lengths)), lengths))  # by length, latest index first
        self.indices = [group.tolist() for group in np.split(order, np.cumsum(count)[:-1])]

    def longest_fitting(self, room: int) -> int | None:
        """The longest length left that fits in `room`, if any."""
        at = bisect.bisect_right(self.present, room)
        return self.present[at - 1] if at else None

    def best_pair(self, room: int, better_than: int) -> tuple[int, int] | None:
        """Two lengths left whose sum is the largest <= room and > better_than; of those, the most even
        pair, so the shortest examples stay for the rows still to fill. Sums are tried from `room` down,
        each with its smaller part descending, which finds most pairs in a few steps; past
        PAIR_SCAN_STEPS (a sum no pair makes costs a step per length left) `pair_by_smaller` answers."""
        present, count, steps = self.present, self.count, PAIR_SCAN_STEPS
        for total in range(room, better_than, -1):
            for at in range(bisect.bisect_right(present, total // 2) - 1, -1, -1):  # the smaller, descending
                steps -= 1
                if steps < 0:
                    return self.pair_by_smaller(room, better_than)
                smaller = present[at]
                if count[total - smaller] and (2 * smaller != total or count[smaller] >= 2):
                    return smaller, total - smaller
        return None

    def pair_by_smaller(self, room: int, better_than: int) -> tuple[int, int] | None:
        """`best_pair` from the other side: each smaller part (descending) with the longest partner that
        fits, one bisection each."""
        present, count = self.present, self.count
        best, best_total = None, better_than
        for at in range(bisect.bisect_right(present, room // 2) - 1, -1, -1):
            smaller = present[at]
            partner_at = bisect.bisect_right(present, room - smaller) - 1  # >= at: smaller <= room // 2
            if partner_at == at and count[smaller] < 2:
                continue  # its only partner would be itself
            if smaller + present[partner_at] > best_total:
                best, best_total = (smaller, present[partner_at]), smaller + present[partner_at]
                if best_total == room:
                    break
        return best

    def take(self, length: int) -> int:
        self.count[length] -= 1
        if not self.count[length]:
            del self.present[bisect.bisect_left(self.present, length)]
        return self.indices[length].pop()


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
    while pool.present:
        room, members = max_len, []
        while (longest := pool.longest_fitting(room)) is not None:
            last_place = room - longest < pool.present[0]  # nothing else would fit after it
            if last_place and (pair := pool.best_pair(room, better_than=longest)):
                members += [pool.take(length) for length in pair]
                room -= sum(pair)
            else:
                members.append(pool.take(longest))
                room -= longest
        rows.append(sorted(members))
    return rows


def pack_rows(examples: TokenizedExamples, max_len: int, pad_id: int, rng: np.random.Generator | None = None,
              indices: np.ndarray | None = None) -> dict[str, object]:
    """Examples -> compact rows: input_ids [rows, max_len] int32 (padded), and per row the
    document_lengths and loss_starts of its documents in input order. `rng` shuffles the rows.
    `indices`: the examples to pack, in input order (default all): a window of a segment's examples
    packs without copying them out first."""
    lengths = examples.lengths
    if indices is None:
        indices = np.arange(len(lengths))
    rows = [indices[members] for members in assign_rows(lengths[indices], max_len)]
    if rng is not None:
        rows = [rows[i] for i in rng.permutation(len(rows))]
    input_ids = np.full((len(rows), max_len), pad_id, dtype=np.int32)
    values, offsets = examples.values, examples.offsets.tolist()
    for row, members in enumerate(rows):
        tokens = np.concatenate([values[offsets[i]:offsets[i + 1]] for i in members.tolist()])
        input_ids[row, : len(tokens)] = tokens
    return {"input_ids": input_ids,
            "document_lengths": [lengths[members].astype(np.int32) for members in rows],
            "loss_starts": [examples.loss_starts[members] for members in rows]}


def document_layout(document_lengths: Sequence[np.ndarray], max_len: int,
                    loss_starts: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Rows of documents side by side -> per slot the document's number in its row (-1 on padding), the
    position inside the document (0 on padding), int64 [rows, max_len], and, given each document's
    `loss_starts`, whether the slot is trained (at or past its document's loss start; padding never).
    Each row's padding is treated as one more document, so each is one `np.repeat` over the batch."""
    rows = len(document_lengths)
    per_row = np.fromiter(map(len, document_lengths), dtype=np.int64, count=rows)
    lengths = np.concatenate([np.zeros(0, np.int64), *document_lengths]).astype(np.int64)
    row_ends = np.cumsum(per_row)
    used = np.bincount(np.repeat(np.arange(rows), per_row), weights=lengths, minlength=rows).astype(np.int64)
    numbers = np.arange(len(lengths)) - np.repeat(row_ends - per_row, per_row)
    lengths = np.insert(lengths, row_ends, max_len - used)
    document_ids = np.repeat(np.insert(numbers, row_ends, -1), lengths)
    positions = np.arange(rows * max_len)
    positions -= np.repeat(np.cumsum(lengths) - lengths, lengths)
    positions[document_ids < 0] = 0
    trained = None
    if loss_starts is not None:  # padding's loss start is past the row
        starts = np.insert(np.concatenate([np.zeros(0, np.int64), *loss_starts]).astype(np.int64), row_ends, max_len)
        trained = (positions >= np.repeat(starts, lengths)).reshape(rows, max_len)
    return document_ids.reshape(rows, max_len), positions.reshape(rows, max_len), trained


def unpack_rows(compact: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Compact rows (`pack_rows`' columns, or a batch of the Dataset's) -> int64 arrays [rows, max_len] of
    PACKED_COLUMNS."""
    input_ids = compact["input_ids"]
    document_ids, positions, trained = document_layout(compact["document_lengths"], input_ids.shape[1],
                                                       compact["loss_starts"])
    ids = input_ids.astype(np.int64)
    return {"input_ids": ids, "labels": np.where(trained, ids, IGNORE_INDEX), "position_ids": positions,
            "document_ids": document_ids}


def seq2seq_examples(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], eos_id: int, max_source: int,
                     max_target: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(source + EOS, target + EOS) int64 per example; Tk-Instruct keeps the first tokens of an over-long
    source (and target)."""
    return ([np.append(np.asarray(ids[: max_source - 1], dtype=np.int64), eos_id) for ids in sources],
            [np.append(np.asarray(ids[: max_target - 1], dtype=np.int64), eos_id) for ids in targets])


def assign_pair_rows(source_lengths: Sequence[int], target_lengths: Sequence[int], max_source: int,
                     max_target: int) -> list[list[int]]:
    """Example indices per encoder-decoder row (members in input order): longest source first, each
    into the open row whose source room it fills best among those with room for its target too."""
    source_lengths, target_lengths = np.asarray(source_lengths, np.int64), np.asarray(target_lengths, np.int64)
    for lengths, limit, side in ((source_lengths, max_source, "source"), (target_lengths, max_target, "target")):
        if len(lengths) and lengths.max() > limit:
            index = int(lengths.argmax())
            raise ValueError(f"example {index} has a {side} of {lengths[index]} tokens, more than {limit}")
    source_room = np.zeros(len(source_lengths), np.int64)
    target_room = np.zeros(len(source_lengths), np.int64)
    rows: list[list[int]] = []
    for index in np.argsort(-source_lengths, kind="stable"):
        source, target = source_lengths[index], target_lengths[index]
        open_rows = len(rows)
        fits = np.flatnonzero((source_room[:open_rows] >= source) & (target_room[:open_rows] >= target))
        if len(fits):
            row = int(fits[np.argmin(source_room[fits])])
        else:
            row = open_rows
            rows.append([])
            source_room[row], target_room[row] = max_source, max_target
        rows[row].append(int(index))
        source_room[row] -= source
        target_room[row] -= target
    return [sorted(members) for members in rows]


def pack_seq2seq_rows(sources: Sequence[np.ndarray], targets: Sequence[np.ndarray], max_source: int, max_target: int,
                      pad_id: int, rng: np.random.Generator | None = None) -> dict[str, object]:
    """(source ids, target ids) examples -> compact encoder-decoder rows: sources side by side in
    input_ids [rows, max_source], their targets in the same order in labels [rows, max_target] (int32,
    padded with pad_id), and per row the source_lengths and target_lengths. `rng` shuffles the rows."""
    source_lengths = np.array([len(ids) for ids in sources], dtype=np.int32)
    target_lengths = np.array([len(ids) for ids in targets], dtype=np.int32)
    rows = assign_pair_rows(source_lengths, target_lengths, max_source, max_target)
    if rng is not None:
        rows = [rows[i] for i in rng.permutation(len(rows))]
    packed = {}
    for column, examples, width in (("input_ids", sources, max_source), ("labels", targets, max_target)):
        packed[column] = np.full((len(rows), width), pad_id, dtype=np.int32)
        for row, members in enumerate(rows):
            tokens = np.concatenate([np.asarray(examples[i], dtype=np.int32) for i in members])
            packed[column][row, : len(tokens)] = tokens
    return {**packed, "source_lengths": [source_lengths[members] for members in rows],
            "target_lengths": [target_lengths[members] for members in rows]}


def unpack_seq2seq_rows(compact: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Compact encoder-decoder rows -> int64 arrays of PACKED_SEQ2SEQ_COLUMNS (labels -100 on padding)."""
    source_document_ids, _, _ = document_layout(compact["source_lengths"], compact["input_ids"].shape[1])
    target_document_ids, _, _ = document_layout(compact["target_lengths"], compact["labels"].shape[1])
    labels = compact["labels"].astype(np.int64)
    return {"input_ids": compact["input_ids"].astype(np.int64), "source_document_ids": source_document_ids,
            "labels": np.where(target_document_ids >= 0, labels, IGNORE_INDEX),
            "target_document_ids": target_document_ids}


def pack_examples(examples: TokenizedExamples, max_len: int, pad_id: int,
                  rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """Examples packed in memory, as the trainer sees them: int64 arrays of PACKED_COLUMNS."""
    return unpack_rows(pack_rows(examples, max_len, pad_id, rng))


def packing_efficiency(document_ids: np.ndarray) -> float:
    """Non-padding tokens / token slots."""
    return float((document_ids >= 0).sum() / document_ids.size) if document_ids.size else 0.0
