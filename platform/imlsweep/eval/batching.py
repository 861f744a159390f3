"""Length-sorted batches shared by generation and rank classification."""

from __future__ import annotations

from typing import Sequence


def length_sorted_batches(lengths: Sequence[int], batch_size: int, num_batches: int | None = None) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first, so memory peaks early).

    `num_batches` pads the list with repeats of the last batch: under ZeRO-3 every rank must run the
    same number of forward passes, because each one gathers the sharded parameters collectively.
    """
    order = sorted(range(len(lengths)), key=lambda index: (-lengths[index], index))
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    if num_batches is not None:
        if num_batches < len(batches):
            raise ValueError(f"num_batches={num_batches} is fewer than the {len(batches)} batches needed")
        if not batches and num_batches > 0:
            raise ValueError("cannot pad an empty share: every rank needs at least one item")
        batches += [batches[-1]] * (num_batches - len(batches))
    return batches


def batch_count(num_items: int, batch_size: int) -> int:
    return -(-num_items // batch_size)
