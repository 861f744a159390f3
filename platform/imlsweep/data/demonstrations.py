"""In-context demonstrations: k-shot drawn from a task's train pool, and MetaICL's truncated Zipf k.

Each task draws one ordered list of candidate demonstrations with the seed; an example takes the first
k of them that are not itself. So examples of a task share their demonstrations (rendered and
tokenized once per task), and MetaICL's k-of-K draws share prefixes of the same list.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, model_validator

from imlsweep.config import StrictModel
from imlsweep.data.seeding import keyed_rng


class DemonstrationsConfig(StrictModel):
    shots: int = Field(default=0, ge=0, description="k demonstrations per example (K, the maximum, with metaicl_zipf_a)")
    metaicl_zipf_a: float | None = Field(
        default=None, gt=0, description="MetaICL training: k ~ truncated Zipf(a) over 0..shots per example")
    separator: str = Field(default="\n\n", description="between demonstrations and the example (MetaICL trained with \\n\\n\\n)")

    @model_validator(mode="after")
    def _zipf_needs_shots(self) -> DemonstrationsConfig:
        if self.metaicl_zipf_a is not None and self.shots == 0:
            raise ValueError("metaicl_zipf_a needs shots > 0 (the largest k drawn)")
        return self


def truncated_zipf_probabilities(a: float, max_shots: int) -> list[float]:
    """P(k) for k in 0..max_shots: k = X - 1 with P(X = x) proportional to x**-a, x in 1..max_shots+1."""
    weights = [x ** -a for x in range(1, max_shots + 2)]
    total = sum(weights)
    return [w / total for w in weights]


def shots_for_example(config: DemonstrationsConfig, seed: int, task_id: str, example_id: str) -> int:
    if config.metaicl_zipf_a is None:
        return config.shots
    rng = keyed_rng(seed, "shots", task_id, example_id)
    probabilities = truncated_zipf_probabilities(config.metaicl_zipf_a, config.shots)
    return rng.choices(range(config.shots + 1), weights=probabilities)[0]


def demonstration_order(pool_size: int, max_shots: int, seed: int, task_id: str) -> list[int]:
    """Positions in the task's train pool, in the order demonstrations are taken (one spare for self)."""
    if max_shots == 0 or pool_size == 0:
        return []
    return keyed_rng(seed, "demonstrations", task_id).sample(range(pool_size), min(pool_size, max_shots + 1))


def pick_demonstrations(order: Sequence[int], k: int, own_position: int | None) -> tuple[int, ...]:
    """The first k positions of the task's order, skipping the example itself."""
    return tuple(p for p in order if p != own_position)[:k]
