"""A search stage's samples: the values of sample i are a function of (the stage's seed, i), drawn here
without Ray, so a resumed sweep redraws exactly the samples it had not finished, under the same names.
Optuna, which learns from finished samples, draws through Ray Tune instead (`tune_space`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from imlsweep.sweep.spec import Distribution, Search


def sample_name(stage: str, index: int) -> str:
    return f"{stage}-s{index:04d}"


def draw(distribution: Distribution, rng: np.random.Generator) -> Any:
    if distribution.kind == "choice":
        return distribution.values[int(rng.integers(len(distribution.values)))]
    low, high = float(distribution.low), float(distribution.high)
    if distribution.kind == "randint":  # high excluded, as in Tune
        return int(rng.integers(int(low), int(high)))
    if distribution.kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return float(rng.uniform(low, high))


def sample_params(search: Search, index: int) -> dict[str, Any]:
    """The dotted-key values of sample `index` of a random search."""
    rng = np.random.default_rng([search.seed, index])
    return {key: draw(distribution, rng) for key, distribution in sorted(search.space.items())}


def tune_space(search: Search) -> dict[str, Any]:
    """The space as Ray Tune distributions (for Optuna)."""
    from ray import tune

    space = {}
    for key, dist in search.space.items():
        if dist.kind == "choice":
            space[key] = tune.choice(dist.values)
        elif dist.kind == "randint":
            space[key] = tune.randint(int(dist.low), int(dist.high))
        else:
            space[key] = getattr(tune, dist.kind)(dist.low, dist.high)
    return space
