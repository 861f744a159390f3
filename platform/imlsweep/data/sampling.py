"""Seeded selection: per-task sample sizes, nested task subsets, largest-category subsets.

Every selection is a prefix of one seeded permutation, so smaller selections are inside larger ones
(the 100 samples are inside the 200; the 16 tasks inside the 64) for the same seed.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from imlsweep.data.seeding import keyed_rng
from imlsweep.errors import UserError

SampleSize = int | Literal["all"]


def sample_positions(pool_size: int, samples: SampleSize, seed: int, task_id: str,
                     first: int | None = None) -> list[int]:
    """Positions (in source order) of n = min(k, pool_size) training examples, nested across k; with
    `first`, only the first that many of them (the same ones, without permuting the whole pool: a trial
    drawing 30 examples of a 5000-row task draws 30 numbers).

    The pool holds only the task's train rows, so the sample never touches test or validation rows."""
    size = pool_size if samples == "all" else min(samples, pool_size)
    rng = keyed_rng(seed, "samples", task_id)
    return permutation_prefix(rng, pool_size, size if first is None else min(first, size))


def permutation_prefix(rng: random.Random, n: int, k: int) -> list[int]:
    """The first k of `rng.sample(range(n), n)`. Past half the pool, that sample itself; below, its
    algorithm (CPython's pool selection, which a sample of the whole pool always takes) run for k steps
    on a pool kept sparse: the pool's moved entries only."""
    if 2 * k > n:
        return rng.sample(range(n), n)[:k]
    moved: dict[int, int] = {}
    prefix = []
    for i in range(k):
        j = rng._randbelow(n - i)  # what sample draws at step i
        prefix.append(moved.get(j, j))
        last = n - i - 1
        moved[j] = moved.get(last, last)  # the pool's last entry fills the vacancy
    return prefix


def nested_task_subset(task_ids: Sequence[str], size: int, required: Iterable[str], seed: int) -> list[str]:
    """`size` tasks: the required ones, then a seeded permutation of the rest (nested across sizes)."""
    available = sorted(set(task_ids))
    required = sorted(set(required))
    missing = [t for t in required if t not in set(available)]
    if missing:
        raise UserError(f"task_subset.required: tasks not in the mixture: {', '.join(missing)}")
    if size < len(required):
        raise UserError(f"task_subset.size: {size} is smaller than the {len(required)} required tasks")
    rest = [t for t in available if t not in set(required)]
    rest = keyed_rng(seed, "task_subset").sample(rest, len(rest))
    return sorted(required + rest[: size - len(required)])


def largest_categories(task_categories: Mapping[str, str], size: int, required: Iterable[str]) -> list[str]:
    """The `size` categories with most tasks (ties by name), the required ones always in."""
    counts = Counter(task_categories.values())
    required = sorted(set(required))
    missing = [c for c in required if c not in counts]
    if missing:
        raise UserError(f"category_subset.required: categories with no task in the mixture: {', '.join(missing)}")
    if size < len(required):
        raise UserError(f"category_subset.size: {size} is smaller than the {len(required)} required categories")
    ranked = sorted((c for c in counts if c not in set(required)), key=lambda c: (-counts[c], c))
    return sorted(required + ranked[: size - len(required)])


def draw_positions(sampled: Sequence[int], count: int, seed: int, source_id: str) -> list[int]:
    """`count` draws from a source's sampled positions: the sample itself first, then fresh seeded
    permutations of it for each further pass (a task whose share exceeds its size repeats)."""
    if not sampled:
        if count:
            raise UserError(f"{source_id}: {count} examples requested from an empty pool")
        return []
    draws: list[int] = []
    passes = 0
    while len(draws) < count:
        order = list(sampled) if passes == 0 else keyed_rng(seed, "pass", source_id, passes).sample(sampled, len(sampled))
        draws.extend(order[: count - len(draws)])
        passes += 1
    return draws
