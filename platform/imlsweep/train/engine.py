"""Building a DeepSpeed engine: the one place that calls `deepspeed.initialize`."""

from __future__ import annotations

import os
from typing import Any


def initialize_engine(model: Any, config: dict[str, Any], lr_scheduler: Any = None, *,
                      use_gpu: bool = False) -> tuple[Any, Any]:
    """(engine, scheduler) for `model` under a derived DeepSpeed `config` (a model loaded under
    `imlsweep.train.partition.partitioned_loading` of the same config arrives partitioned)."""
    import deepspeed

    connect(use_gpu)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]  # a LoRA base is frozen
    engine, _, _, scheduler = deepspeed.initialize(model=model, model_parameters=trainable, config=config,
                                                   lr_scheduler=lr_scheduler)
    return engine, scheduler


def connect(use_gpu: bool) -> None:
    """The process group and DeepSpeed's communication backend over it, before an engine is built or a
    model is partitioned as it is loaded.

    DeepSpeed's communication backend JIT-compiles a CPU shared-memory op on first use, under a file
    lock in the torch extensions cache; a process killed mid-build leaves that lock behind and every
    later engine waits on it forever. The op only speeds up `inference_all_reduce` (tensor-parallel
    inference), never training, so it is marked incompatible and training uses the process group.
    """
    import deepspeed
    import deepspeed.ops

    ensure_process_group(use_gpu)
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.comm.init_distributed()  # wraps the group above; zero.Init reads the world size from it


def ensure_process_group(use_gpu: bool) -> None:
    """A one-process group when nobody set one up: Ray Train's workers come with theirs, an in-process
    trial or a benchmark does not. An in-memory store needs no port, so trials sharing a node never
    collide; the group lives as long as the process and serves every later in-process trial."""
    import torch.distributed as dist

    if not dist.is_initialized():
        os.environ.setdefault("LOCAL_RANK", "0")  # DeepSpeed picks its device by it
        dist.init_process_group("nccl" if use_gpu else "gloo", store=dist.HashStore(), rank=0, world_size=1)
