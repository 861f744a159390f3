"""How much of a reported number is noise: bootstrap intervals and paired tests (pure functions).

Every reported number is a weighted mean of per-instance values, and stands on evaluation instances
(grouped in strata: a task's items at one shot setting in one trial) and on replicates (trials that
differ only in their seed). The bootstrap resamples both levels: replicates with replacement, and
each stratum's instances with replacement within it, keeping a stratum's weight fixed (the task mix
of a number is part of its definition, not noise). Intervals are percentile intervals of the draws.

Input frames have one row per evaluated instance with columns `replicate`, `stratum` (hashable),
`value` and `weight` (a stratum's weight in the mean; the same on each of its rows). Draws are
seeded by (seed, key): the same seed and key give the same interval whatever else is computed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

DRAWS = 1000
LEVEL = 0.95
INSTANCE_COLUMNS = ("replicate", "stratum", "value", "weight")


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap interval, and what it stands on."""

    mean: float
    low: float
    high: float
    n_instances: int
    n_replicates: int
    draws: np.ndarray  # the bootstrap distribution, for quantities derived from several intervals

    def __str__(self) -> str:
        return f"{self.mean:.2f} [{self.low:.2f}, {self.high:.2f}]"


@dataclass(frozen=True)
class Difference:
    """A paired difference A - B with its interval and two-sided paired-bootstrap p-value."""

    interval: Interval
    p_value: float


def rng_for(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


def replicate_draws(instances: pd.DataFrame, draws: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(estimate per replicate, bootstrap draws per replicate [replicates x draws]): each replicate's
    weighted mean over its strata, its strata's instances resampled (all strata in one array operation)."""
    replicate_codes, _ = pd.factorize(instances["replicate"], sort=True)
    stratum_codes, _ = pd.factorize(instances["stratum"], sort=True)
    order = np.lexsort((stratum_codes, replicate_codes))
    replicate_codes, stratum_codes = replicate_codes[order], stratum_codes[order]
    all_values, all_weights = instances["value"].to_numpy(float)[order], instances["weight"].to_numpy(float)[order]
    estimates, resampled = [], []
    for bounds in np.split(np.arange(len(order)), np.flatnonzero(np.diff(replicate_codes)) + 1):
        values, strata = all_values[bounds], stratum_codes[bounds]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(strata)) + 1])
        sizes = np.diff(np.append(starts, len(values)))
        weights = all_weights[bounds][starts]
        stratum_of = np.repeat(np.arange(len(sizes)), sizes)
        picks = starts[stratum_of] + (rng.random((draws, len(values))) * sizes[stratum_of]).astype(int)
        means = np.add.reduceat(values[picks], starts, axis=1) / sizes
        estimates.append(float(np.add.reduceat(values, starts) / sizes @ weights / weights.sum()))
        resampled.append(means @ weights / weights.sum())
    return np.asarray(estimates), np.vstack(resampled)


def bootstrap_mean(instances: pd.DataFrame, seed: int, key: str, draws: int = DRAWS, level: float = LEVEL) -> Interval:
    """The mean over replicates of each replicate's weighted stratum means, with its interval."""
    if instances.empty:
        raise ValueError(f"{key}: no instances to bootstrap")
    rng = rng_for(seed, key)
    estimates, per_replicate = replicate_draws(instances, draws, rng)
    picks = rng.integers(0, len(estimates), size=(draws, len(estimates)))
    resampled = per_replicate[picks, np.arange(draws)[:, None]].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(resampled, [tail, 1 - tail])
    return Interval(mean=float(estimates.mean()), low=float(low), high=float(high), n_instances=len(instances),
                    n_replicates=len(estimates), draws=resampled)


def paired_instances(a: pd.DataFrame, b: pd.DataFrame, on: list[str]) -> pd.DataFrame:
    """Per-instance differences A - B of the instances both have (same replicate and `on` keys); the
    stratum and weight are A's."""
    keys = ["replicate"] + on
    joined = a.merge(b[keys + ["value"]], on=keys, suffixes=("", "_b"), validate="one_to_one")
    return joined.assign(value=joined["value"] - joined["value_b"]).drop(columns="value_b")


def paired_difference(a: pd.DataFrame, b: pd.DataFrame, on: list[str], seed: int, key: str,
                      draws: int = DRAWS, level: float = LEVEL) -> Difference | None:
    """A - B on their shared instances; the p-value is the share of bootstrap draws, shifted to a zero
    mean, at least as far from zero as the observed difference (None when nothing pairs)."""
    differences = paired_instances(a, b, on)
    if differences.empty:
        return None
    interval = bootstrap_mean(differences, seed, key, draws, level)
    shifted = interval.draws - interval.draws.mean()
    extreme = np.count_nonzero(np.abs(shifted) >= abs(interval.mean) - 1e-12)
    return Difference(interval=interval, p_value=float((1 + extreme) / (1 + len(shifted))))


def interval_of_derived(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of a quantity computed on each bootstrap draw (NaN: undefined on that draw,
    e.g. a target never reached; +inf bounds then say the interval is open)."""
    values = np.where(np.isnan(values), np.inf, values)
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail], method="inverted_cdf")  # no interpolation with inf
    return float(low), float(high)
