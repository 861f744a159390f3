"""Building a DeepSpeed engine: the one place that calls `deepspeed.initialize`."""

from __future__ import annotations

from typing import Any


def initialize_engine(model: Any, config: dict[str, Any], lr_scheduler: Any = None) -> tuple[Any, Any]:
    """(engine, scheduler) for `model` under a derived DeepSpeed `config`.

    DeepSpeed's communication backend JIT-compiles a CPU shared-memory op on first use, under a file
    lock in the torch extensions cache; a process killed mid-build leaves that lock behind and every
    later engine waits on it forever. The op only speeds up `inference_all_reduce` (tensor-parallel
    inference), never training, so it is marked incompatible and training uses the process group.
    """
    import deepspeed
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    engine, _, _, scheduler = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config,
                                                   lr_scheduler=lr_scheduler)
    return engine, scheduler
