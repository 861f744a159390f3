"""The DeepSpeed config a worker builds its engine from, derived from a trial's `TrainConfig`.

Everything the trial sets (ZeRO stage, offload, precision, AdamW, clipping, batch sizes) is
written in DeepSpeed's own terms, so the derived JSON is what a user reads and overrides: a raw
`train.deepspeed` dict is merged over it key by key.
"""

from __future__ import annotations

import copy
from typing import Any

from imlsweep.train.config import TrainConfig


def deepspeed_config(train: TrainConfig) -> dict[str, Any]:
    """The learning-rate schedule is not here: the worker passes `imlsweep.train.schedule` to DeepSpeed
    (a `scheduler` section in the override replaces it)."""
    config: dict[str, Any] = {
        "train_batch_size": train.rows_per_step,
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.accumulation_steps,
        "gradient_clipping": train.clip,
        "zero_optimization": zero_section(train),
        "bf16": {"enabled": train.precision == "bf16"},
        # loss_scale 0 = dynamic loss scaling
        "fp16": {"enabled": train.precision == "fp16", "loss_scale": 0, "initial_scale_power": 16,
                 "loss_scale_window": 1000, "hysteresis": 2, "min_loss_scale": 1},
        "optimizer": {"type": "AdamW", "params": optimizer_params(train)},
        "steps_per_print": 10**9,  # the trainer reports its own metrics
        "wall_clock_breakdown": False,
    }
    return merge(config, train.deepspeed_override())


def zero_section(train: TrainConfig) -> dict[str, Any]:
    section: dict[str, Any] = {"stage": train.zero_stage}
    if train.offload_optimizer:
        section["offload_optimizer"] = {"device": "cpu", "pin_memory": train.use_gpu}
    if train.offload_params:
        section["offload_param"] = {"device": "cpu", "pin_memory": train.use_gpu}
    if train.zero_stage == 3:
        # lets the final export gather full weights without a second copy of the model per worker
        section["stage3_gather_16bit_weights_on_model_save"] = True
    return section


def optimizer_params(train: TrainConfig) -> dict[str, Any]:
    params: dict[str, Any] = {"lr": train.lr, "betas": list(train.betas), "eps": 1e-8,
                              "weight_decay": train.weight_decay}
    if not train.use_gpu and not train.offload_optimizer:
        params["torch_adam"] = True  # DeepSpeed's fused Adam is a CUDA kernel
    return params


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` wins; nested dicts merge key by key."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
