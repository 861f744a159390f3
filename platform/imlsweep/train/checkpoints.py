"""Checkpoints: retention as Ray Train keeps it, DeepSpeed state with the data position, and the final
export in Hugging Face format.

Retention (`train.keep`): `all` keeps every checkpoint; `last` the `num_to_keep` most recent; `best`
the `num_to_keep` with the highest validation score `eval.best_metric` when the trial validates while
it trains (`eval.every_steps`), else with the lowest training loss; `none` writes no checkpoint (a
failed worker then restarts the trial from step 0). Ray Train also keeps the latest checkpoint, to
resume from. A LoRA trial's checkpoints and export hold the adapter, not the frozen base
(`imlsweep.train.lora`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

from imlsweep.eval.config import EvalConfig
from imlsweep.train.config import TrainConfig
from imlsweep.train.lora import LoraConfig, merged_model, save_adapter

ENGINE_TAG = "state"  # DeepSpeed tag (subfolder) inside each checkpoint
PROGRESS_FILE = "progress.json"
LOSS_METRIC = "loss"


@dataclass
class Progress:
    """Where training stands: optimizer steps, and the position in the data stream to resume from."""

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of `epoch` already trained on
    train_tokens: int = 0
    train_examples: int = 0
    train_time_s: float = 0.0


def checkpoint_config_kwargs(train: TrainConfig, eval_config: EvalConfig | None = None) -> dict[str, Any]:
    """Keyword arguments of `ray.train.CheckpointConfig` for the trial's `keep`."""
    if train.keep == "last":
        return {"num_to_keep": train.num_to_keep}
    if train.keep == "best" and eval_config is not None and eval_config.every_steps is not None:
        return {"num_to_keep": train.num_to_keep, "checkpoint_score_attribute": eval_config.best_metric,
                "checkpoint_score_order": "max"}
    if train.keep == "best":
        return {"num_to_keep": train.num_to_keep, "checkpoint_score_attribute": LOSS_METRIC,
                "checkpoint_score_order": "min"}
    return {}


def checkpoint_due(train: TrainConfig, step: int) -> bool:
    """A periodic checkpoint after this optimizer step (the final one is always written unless `none`)."""
    return train.keep != "none" and train.checkpoint_every is not None and step % train.checkpoint_every == 0


def save_state(engine: Any, directory: str, progress: Progress, adapter_only: bool = False) -> None:
    """Every rank writes its DeepSpeed shard (the trainable weights only with `adapter_only`); rank 0
    also writes the data position."""
    engine.save_checkpoint(directory, tag=ENGINE_TAG, exclude_frozen_parameters=adapter_only)
    if engine.global_rank == 0:
        with open(os.path.join(directory, PROGRESS_FILE), "w") as stream:
            json.dump(asdict(progress), stream)


def load_state(engine: Any, directory: str, adapter_only: bool = False) -> Progress:
    """`adapter_only`: the checkpoint lacks the frozen base, which the engine already holds."""
    engine.load_checkpoint(directory, tag=ENGINE_TAG, load_module_strict=not adapter_only)
    with open(os.path.join(directory, PROGRESS_FILE)) as stream:
        return Progress(**json.load(stream))


def full_state_dict(engine: Any, trainable_only: bool = False) -> dict[str, Any] | None:
    """The whole model's weights (or its trainable ones) on rank 0, None elsewhere; every rank must call
    it under ZeRO 3."""
    if engine.zero_optimization_partition_weights():
        state = engine._zero3_consolidated_16bit_state_dict(exclude_frozen_parameters=trainable_only)
        return state if engine.global_rank == 0 else None
    if engine.global_rank != 0:
        return None
    state = engine.module.state_dict()
    if trainable_only:
        trainable = {name for name, parameter in engine.module.named_parameters() if parameter.requires_grad}
        state = {name: value for name, value in state.items() if name in trainable}
    return state


def export_hf(engine: Any, tokenizer: Any, out_dir: str, lora: LoraConfig | None = None, base: str = "") -> bool:
    """Write the model (config and safetensors weights) and tokenizer to `out_dir` on rank 0. A LoRA
    trial writes its adapter, on top of `base`, or with `lora.export_merged` the base with it merged in."""
    adapter_only = lora is not None and not lora.export_merged
    state = full_state_dict(engine, trainable_only=adapter_only)
    if state is None:
        return False
    if adapter_only:
        save_adapter(engine.module, state, base, out_dir)
    elif lora is not None:
        merged_model(engine.module, state).save_pretrained(out_dir, safe_serialization=True)
    else:
        engine.module.save_pretrained(out_dir, state_dict=state, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return True
