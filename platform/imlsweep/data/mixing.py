"""Mixing rates: seqio's example-proportional mixing with a cap, benchmark proportions, add-ons.

rate_t = min(n_t, EPS) ** (1 / T), normalised within a benchmark; benchmarks then share the stream by
a fixed proportion vector (or, without one, by their summed rates); add-on sources take fixed
fractions off the top. Everything here is a function of sizes: no data is read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from imlsweep.errors import UserError

# OPT-IML's proportion vector order: CrossFit/ExMix/FLAN/SuperNI/PromptSource/T5/UnifiedSKG.
PROPORTION_ORDER = ["crossfit", "exmix", "flan", "superni", "promptsource", "t5", "unifiedskg"]


def eps_mixing_rates(sizes: Mapping[str, int], eps: float | None, temperature: float = 1.0) -> dict[str, float]:
    """Unnormalised seqio rates: min(n, eps) ** (1 / temperature); eps None = no cap."""
    if temperature <= 0:
        raise UserError(f"temperature: must be positive, got {temperature}")
    capped = {k: float(n if eps is None else min(n, eps)) for k, n in sizes.items()}
    return {k: v ** (1.0 / temperature) for k, v in capped.items()}


def normalise(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    if total <= 0:
        return {k: 0.0 for k in weights}
    return {k: v / total for k, v in weights.items()}


def parse_benchmark_proportions(value: str | Mapping[str, float]) -> dict[str, float]:
    """"4/2/20/25/45/2/2" (in PROPORTION_ORDER) or {benchmark: weight}; returned normalised to 1."""
    if isinstance(value, str):
        parts = value.split("/")
        if len(parts) != len(PROPORTION_ORDER):
            raise UserError(f"benchmark_proportions: {value!r} needs {len(PROPORTION_ORDER)} numbers separated "
                            f"by '/' ({'/'.join(PROPORTION_ORDER)})")
        try:
            weights = dict(zip(PROPORTION_ORDER, (float(p) for p in parts)))
        except ValueError:
            raise UserError(f"benchmark_proportions: {value!r} is not a list of numbers") from None
        return check_proportions(weights, "benchmark_proportions")
    return check_proportions(value, "benchmark_proportions")


def check_proportions(value: Mapping[str, float], key: str | None = None) -> dict[str, float]:
    """{group: weight} with non-negative weights and a positive sum, returned normalised to 1."""
    weights = {str(k): float(v) for k, v in value.items()}
    if any(v < 0 for v in weights.values()) or sum(weights.values()) <= 0:
        where = f"{key}: " if key else ""
        raise UserError(f"{where}{dict(value)!r} needs non-negative weights with a positive sum")
    return normalise(weights)


def task_shares(groups: Mapping[str, str], sizes: Mapping[str, int], *, eps: float | None,
                temperature: float = 1.0, proportions: Mapping[str, float] | None = None,
                reserved: float = 0.0, key: str = "benchmark_proportions") -> dict[str, float]:
    """Each task's share of the stream; the shares sum to 1 - reserved (what add-ons take).

    With proportions over the tasks' groups (`groups`: task -> its benchmark, category or itself), a
    group's share is its (renormalised) weight, split among its tasks by their rates; without, all tasks
    share by their rates (the "natural" mix under the cap). `key` names the proportions in errors."""
    rates = eps_mixing_rates(sizes, eps, temperature)
    if proportions is None:
        return {t: s * (1.0 - reserved) for t, s in normalise(rates).items()}
    present = sorted(set(groups.values()))
    unweighted = [g for g in present if proportions.get(g, 0.0) <= 0]
    if unweighted:
        raise UserError(f"{key}: no weight for {key.removesuffix('_proportions')}(s) in the mixture: "
                        f"{', '.join(unweighted)} (drop their tasks or give them a weight)")
    weights = normalise({g: proportions[g] for g in present})
    shares: dict[str, float] = {}
    for group in present:
        members = {t: r for t, r in rates.items() if groups[t] == group}
        for task, share in normalise(members).items():
            shares[task] = share * weights[group] * (1.0 - reserved)
    return shares


def allocate_counts(shares: Mapping[str, float], total: int) -> dict[str, int]:
    """Whole example counts summing to `total`, proportional to shares (largest remainder; ties by key)."""
    keys = sorted(shares)
    weight = sum(shares.values())
    if total <= 0 or weight <= 0:
        return {k: 0 for k in keys}
    exact = np.array([shares[k] / weight * total for k in keys])
    counts = np.floor(exact).astype(np.int64)
    remainder = exact - counts
    for i in sorted(range(len(keys)), key=lambda i: (-remainder[i], keys[i]))[: total - int(counts.sum())]:
        counts[i] += 1
    return {k: int(c) for k, c in zip(keys, counts)}


def mixed_order(counts: Sequence[int], seed: int) -> np.ndarray:
    """A seeded interleaving of sources: returns, per stream position, the index of its source.
    One permutation of all draws, so it scales to thousands of sources (no pairwise mixing)."""
    sources = np.repeat(np.arange(len(counts), dtype=np.int64), np.asarray(counts, dtype=np.int64))
    np.random.default_rng(seed).shuffle(sources)
    return sources


def is_capped(size: int, eps: float | None) -> bool:
    return eps is not None and size > eps and not math.isinf(eps)
