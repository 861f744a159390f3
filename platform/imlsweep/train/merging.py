"""Model merging: one model made from several fine-tuned models of one base, without training.

Methods, applied tensor by tensor (pure functions; `imlsweep.train.merge_trial` streams the tensors):

- `uniform`: the mean of the models' weights.
- `task_arithmetic` (Ilharco et al., 2023): base + scale x the sum of the task vectors (model - base).
- `ties` (Yadav et al., 2023): each task vector trimmed to its `density` fraction of largest magnitudes,
  the sign of each weight elected by the summed trimmed mass, and the mean of the trimmed values that
  agree with it (zeros do not vote or count) added to the base, times `scale`. Trimming is per tensor,
  as mergekit does it, so a merge never holds a whole task vector.

A tensor is computed in float32 and returned in the first model's dtype. The models come as a function
`load(i)` (model i's tensor), called at most twice per model, so memory is a few tensors whatever the
number of models.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from pydantic import Field, model_validator

from imlsweep.config import StrictModel

MergeMethod = Literal["uniform", "task_arithmetic", "ties"]
TensorLoader = Callable[[int], torch.Tensor]


class MergeConfig(StrictModel):
    """A trial that merges finished models instead of training (a sweep's `merge` stage fills `models`)."""

    method: MergeMethod = "task_arithmetic"
    scale: float = Field(default=1.0, description="task arithmetic and TIES: the task vectors' coefficient")
    density: float = Field(default=0.2, gt=0, le=1, description="TIES: the fraction of each task vector's "
                           "weights (largest magnitudes, per tensor) that is kept")
    models: list[str] = Field(min_length=1, description="Hugging Face folders of the models merged (safetensors)")
    base: str | None = Field(default=None, description="the folder the models were fine-tuned from; null: the "
                             "trial's own `model` (task arithmetic and TIES subtract it)")

    @model_validator(mode="after")
    def _distinct_models(self) -> "MergeConfig":
        repeated = sorted({model for model in self.models if self.models.count(model) > 1})
        if repeated:
            raise ValueError(f"models repeat: {repeated}")
        return self

    @property
    def uses_base(self) -> bool:
        return self.method != "uniform"


def merge_tensor(config: MergeConfig, load: TensorLoader, count: int, base: torch.Tensor | None) -> torch.Tensor:
    """The merged tensor of `count` models (`load(i)`: model i's tensor); `base` for the methods that use it."""
    first = load(0)
    if not first.is_floating_point():  # integer buffers (positions, counters) are not weights
        return first
    if config.method == "uniform":
        return uniform_mean(first, load, count).to(first.dtype)
    if base is None:
        raise ValueError(f"{config.method} needs the base model's tensor")
    origin = base.to(torch.float32)
    if config.method == "task_arithmetic":
        vector = task_vector_sum(first, load, count, origin)
    else:
        vector = ties_vector(first, load, count, origin, config.density)
    return (origin + config.scale * vector).to(first.dtype)


def uniform_mean(first: torch.Tensor, load: TensorLoader, count: int) -> torch.Tensor:
    total = first.to(torch.float32).clone()
    for index in range(1, count):
        total += load(index).to(torch.float32)
    return total / count


def task_vector_sum(first: torch.Tensor, load: TensorLoader, count: int, origin: torch.Tensor) -> torch.Tensor:
    total = first.to(torch.float32) - origin
    for index in range(1, count):
        total += load(index).to(torch.float32) - origin
    return total


def trimmed(vector: torch.Tensor, density: float) -> torch.Tensor:
    """`vector` with all but its `density` fraction of largest magnitudes set to zero (ties at the
    threshold are kept)."""
    if density >= 1 or vector.numel() == 0:
        return vector
    keep = max(1, math.ceil(density * vector.numel()))
    magnitudes = vector.abs().flatten()
    threshold = torch.kthvalue(magnitudes, magnitudes.numel() - keep + 1).values
    return torch.where(vector.abs() >= threshold, vector, torch.zeros_like(vector))


def ties_vector(first: torch.Tensor, load: TensorLoader, count: int, origin: torch.Tensor,
                density: float) -> torch.Tensor:
    """TIES: trim, elect signs by summed mass (pass 1), disjoint mean of the agreeing values (pass 2)."""
    def vector(index: int) -> torch.Tensor:
        weights = first if index == 0 else load(index)
        return trimmed(weights.to(torch.float32) - origin, density)

    mass = torch.zeros_like(origin)
    for index in range(count):
        mass += vector(index)
    sign = torch.sign(mass)
    total, agreeing = torch.zeros_like(origin), torch.zeros_like(origin)
    for index in range(count):
        values = vector(index)
        agrees = (torch.sign(values) == sign) & (values != 0)
        total += torch.where(agrees, values, torch.zeros_like(values))
        agreeing += agrees
    return total / agreeing.clamp(min=1)
