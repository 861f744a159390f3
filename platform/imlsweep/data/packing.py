"""Packing tokenized examples into fixed-length rows for decoder-only training ("label-loss").

An example is source ids + target ids + EOS; its labels are -100 on the source (unless the whole
sequence is trained on, as for plain-text add-ons). Rows hold whole examples, placed first-fit among a
bounded set of open rows (deterministic in the input order); `position_ids` restart per document and
`document_ids` number the documents of a row (-1 on padding) so the trainer can build a block-causal
mask. Restarted position ids alone do not keep documents apart under sdpa attention.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

IGNORE_INDEX = -100
PACKED_COLUMNS = ("input_ids", "labels", "position_ids", "document_ids")


def example_tokens(source_ids: Sequence[int], target_ids: Sequence[int], eos_id: int,
                   loss_on_source: bool = False) -> tuple[list[int], list[int]]:
    ids = [*source_ids, *target_ids, eos_id]
    labels = ids.copy() if loss_on_source else [IGNORE_INDEX] * len(source_ids) + [*target_ids, eos_id]
    return ids, labels


def truncate(ids: list[int], labels: list[int], max_len: int,
             side: Literal["left", "right"] = "left") -> tuple[list[int], list[int]]:
    """Left truncation keeps the end (the target and EOS); right keeps the beginning."""
    if len(ids) <= max_len:
        return ids, labels
    if side == "left":
        return ids[-max_len:], labels[-max_len:]
    return ids[:max_len], labels[:max_len]


def first_fit_rows(lengths: Sequence[int], max_len: int, open_rows: int = 16) -> list[list[int]]:
    """Assign examples (by index) to rows first-fit; at most `open_rows` rows stay open, and the
    fullest is closed when another must open. Rows come out in the order they are closed."""
    rows: list[list[int]] = []
    open_members: list[list[int]] = []
    open_free: list[int] = []
    for index, length in enumerate(lengths):
        if length > max_len:
            raise ValueError(f"example {index} has {length} tokens, more than max_len {max_len}: truncate first")
        slot = next((i for i, free in enumerate(open_free) if free >= length), None)
        if slot is None:
            if len(open_members) == open_rows:
                fullest = min(range(len(open_free)), key=lambda i: open_free[i])
                rows.append(open_members.pop(fullest))
                open_free.pop(fullest)
            open_members.append([])
            open_free.append(max_len)
            slot = len(open_members) - 1
        open_members[slot].append(index)
        open_free[slot] -= length
    return rows + open_members


def pack_examples(examples: Sequence[tuple[Sequence[int], Sequence[int]]], max_len: int, pad_id: int,
                  open_rows: int = 16) -> dict[str, np.ndarray]:
    """(ids, labels) pairs, each at most max_len long -> int64 arrays [rows, max_len] of PACKED_COLUMNS."""
    assignment = first_fit_rows([len(ids) for ids, _ in examples], max_len, open_rows)
    shape = (len(assignment), max_len)
    packed = {
        "input_ids": np.full(shape, pad_id, dtype=np.int64),
        "labels": np.full(shape, IGNORE_INDEX, dtype=np.int64),
        "position_ids": np.zeros(shape, dtype=np.int64),
        "document_ids": np.full(shape, -1, dtype=np.int64),
    }
    for row, members in enumerate(assignment):
        start = 0
        for document, index in enumerate(members):
            ids, labels = examples[index]
            end = start + len(ids)
            packed["input_ids"][row, start:end] = ids
            packed["labels"][row, start:end] = labels
            packed["position_ids"][row, start:end] = np.arange(len(ids))
            packed["document_ids"][row, start:end] = document
            start = end
    return packed


def packing_efficiency(document_ids: np.ndarray) -> float:
    """Non-padding tokens / token slots."""
    return float((document_ids >= 0).sum() / document_ids.size) if document_ids.size else 0.0
