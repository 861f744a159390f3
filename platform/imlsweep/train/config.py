"""Trial and training settings as a user writes them in YAML.

A `TrialConfig` is one trial: model + mixture + train settings (+ eval suite). Every combination the
trainer cannot run (a ZeRO stage the precision or offload cannot use, a global batch the micro batch,
accumulation and workers do not divide) is rejected here, before any worker starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from imlsweep.config import ConfigError, StrictModel, load_config
from imlsweep.data.mixture import MixtureConfig
from imlsweep.eval.config import EvalConfig
from imlsweep.train.merging import MergeConfig
from imlsweep.train.model import ModelConfig

Precision = Literal["bf16", "fp16", "fp32"]
KeptCheckpoints = Literal["all", "last", "best", "none"]


class TrainConfig(StrictModel):
    retired_keys = {"use_gpu": "set `gpus_per_worker` (GPUs each worker holds; fractions allowed)",
                    "max_failures": "renamed to `worker_restarts`"}

    workers: int = Field(default=1, ge=1, description="Ray Train workers")
    cpus_per_worker: float = Field(default=1, gt=0, description="CPUs Ray reserves for each worker")
    gpus_per_worker: float = Field(default=0, ge=0, description="GPUs Ray reserves for each worker; a fraction "
                                   "shares a GPU between workers; 0 trains on CPU")
    zero_stage: int = Field(default=2, ge=0, le=3, description="DeepSpeed ZeRO stage")
    offload_optimizer: bool = Field(default=False, description="optimizer state on CPU (ZeRO 1-3)")
    offload_params: bool = Field(default=False, description="parameters on CPU (ZeRO 3)")
    precision: Precision = Field(default="bf16", description="fp16 uses dynamic loss scaling (GPU only)")
    lr: float = Field(default=5e-5, gt=0)
    warmup_steps: int = Field(default=60, ge=0, description="linear warm-up from 0")
    schedule: Literal["linear", "constant"] = Field(default="linear", description="after warm-up: linear decay to 0, or constant")
    weight_decay: float = Field(default=0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    clip: float = Field(default=1.0, ge=0, description="gradient norm clipping; 0 turns it off")
    micro_batch_size: int = Field(default=8, ge=1, description="rows per worker per forward pass")
    activation_checkpointing: bool = Field(
        default=False, description="keep only each layer's input and recompute the rest in the backward pass: "
        "less activation memory for about a third more compute")
    grad_accum: int | None = Field(default=None, ge=1, description="derived from global_batch_size when unset")
    global_batch_size: int | None = Field(default=None, ge=1, description="rows per optimizer step, all workers")
    max_steps: int | None = Field(default=None, ge=1, description="optimizer steps; or set epochs")
    epochs: int | None = Field(default=None, ge=1, description="passes over the mixture's stream; 1 when max_steps "
                               "is unset")
    log_every: int = Field(default=10, ge=1, description="report metrics every N optimizer steps")
    checkpoint_every: int | None = Field(default=None, ge=1, description="steps between checkpoints; always one at the end")
    keep: KeptCheckpoints = Field(default="last", description="which checkpoints stay on disk; none writes none")
    num_to_keep: int = Field(default=1, ge=1, description="how many checkpoints `last` / `best` keep")
    export_hf: bool = Field(default=False, description="write the final weights as a Hugging Face folder (hf_model/)")
    deepspeed: dict[str, Any] | str | None = Field(
        default=None, description="raw DeepSpeed config (dict or JSON file) merged over the derived one")
    seed: int = 1234
    worker_restarts: int = Field(default=1, ge=0, description="times Ray Train restarts the workers of a trial "
                                 "after one fails, each time from the last checkpoint")
    fail_at_step: int | None = Field(
        default=None, ge=1, description="for testing restarts only: rank 0 raises once after this optimizer step")

    @model_validator(mode="after")
    def _check_combinations(self) -> TrainConfig:
        if self.offload_params and self.zero_stage != 3:
            raise ValueError(f"offload_params needs zero_stage 3, not {self.zero_stage}")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage 1, 2 or 3, not 0")
        if self.precision == "fp16" and not self.use_gpu:
            raise ValueError(f"precision fp16 (ZeRO stage {self.zero_stage}) needs GPUs (gpus_per_worker > 0); "
                             "DeepSpeed on CPU runs bf16 or fp32")
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError("set max_steps or epochs, not both")
        rows_per_accum = self.micro_batch_size * self.workers
        if self.global_batch_size is not None:
            if self.global_batch_size % rows_per_accum:
                raise ValueError(f"global_batch_size {self.global_batch_size} is not divisible by micro_batch_size "
                                 f"{self.micro_batch_size} x workers {self.workers} = {rows_per_accum}")
            derived = self.global_batch_size // rows_per_accum
            if self.grad_accum is not None and self.grad_accum != derived:
                raise ValueError(f"micro_batch_size {self.micro_batch_size} x grad_accum {self.grad_accum} x workers "
                                 f"{self.workers} = {rows_per_accum * self.grad_accum}, not global_batch_size "
                                 f"{self.global_batch_size}")
        return self

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    @property
    def accumulation_steps(self) -> int:
        if self.global_batch_size is not None:
            return self.global_batch_size // (self.micro_batch_size * self.workers)
        return self.grad_accum or 1

    @property
    def rows_per_step(self) -> int:
        return self.micro_batch_size * self.accumulation_steps * self.workers

    def deepspeed_override(self) -> dict[str, Any]:
        if self.deepspeed is None:
            return {}
        if isinstance(self.deepspeed, dict):
            return self.deepspeed
        path = Path(self.deepspeed)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ConfigError(f"train.deepspeed: cannot read DeepSpeed JSON {path}: {error}") from None


class TrialConfig(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.=-]*$", description="the trial directory's name")
    corpus: str = Field(description="a built corpus directory")
    token_cache: str | None = Field(default=None, description="where tokenized tasks are cached and shared by "
                                    "trials: a folder or an s3:// / gs:// URI; null: <corpus>.token-cache")
    model: ModelConfig
    mixture: MixtureConfig
    train: TrainConfig = TrainConfig()
    eval: EvalConfig | None = None
    init_from: str | None = Field(default=None, description="a Hugging Face folder the weights start from")
    merge: MergeConfig | None = Field(default=None, description="make the model by merging finished models "
                                      "instead of training (`train` is then unused), and evaluate it")

    @model_validator(mode="after")
    def _merge_starts_from_nothing(self) -> TrialConfig:
        if self.merge is not None and self.init_from is not None:
            raise ValueError("a merge trial starts from no weights: set merge.base, not init_from")
        return self

    @model_validator(mode="after")
    def _checkpoints_have_scores(self) -> TrialConfig:
        """`keep: best` ranks checkpoints by their validation score: each checkpoint step must be a validation step."""
        every = self.eval.every_steps if self.eval is not None else None
        checkpoint_every = self.train.checkpoint_every
        if self.train.keep == "best" and every is not None and checkpoint_every is not None and checkpoint_every % every:
            raise ValueError(f"train.checkpoint_every {checkpoint_every} is not a multiple of eval.every_steps {every}: "
                             f"with train.keep: best every checkpoint needs its validation score ({self.eval.best_metric})")
        return self


def load_trial_config(path: str | Path) -> TrialConfig:
    return load_config(path, TrialConfig)
