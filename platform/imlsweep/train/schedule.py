"""The learning-rate schedule: linear warm-up from 0 over `warmup_steps`, then linear decay to 0 at the
last step (OPT-IML) or constant (Tk-Instruct). Same formula as transformers' linear schedule."""

from __future__ import annotations

from typing import Any, Callable

from imlsweep.train.config import TrainConfig


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Multiplier of the peak learning rate for the update after `step` updates."""
    if step < warmup_steps:
        return step / warmup_steps
    if schedule == "constant":
        return 1.0
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def lr_scheduler(train: TrainConfig, total_steps: int) -> Callable[[Any], Any]:
    """What `deepspeed.initialize(lr_scheduler=...)` takes: optimizer -> scheduler. A `scheduler`
    section in the raw DeepSpeed override takes precedence over it."""
    import torch

    def build(optimizer: Any) -> Any:
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, train.warmup_steps, total_steps, train.schedule))

    return build
