"""Partitioned loading under ZeRO-3: parameters are split over the workers as the model is built.

While `partitioned_loading` is open under a ZeRO-3 DeepSpeed config, transformers builds models inside
`deepspeed.zero.Init` (its `HfDeepSpeedConfig` switch): each module's parameters are partitioned over
the ranks as soon as the module exists, and `from_pretrained` maps the checkpoint on rank 0 (safetensors
are memory-mapped) and copies it layer by layer into the partitions, so no worker ever holds the whole
model. The engine is then built
from the same config. Under ZeRO 0-2 nothing changes: every worker builds the whole model and
`deepspeed.initialize` partitions (or replicates) what the stage says. `gathered` lets code that writes
weights (a seeded initialisation, merging a LoRA adapter) see whole parameters one module at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any


def partitions_weights(ds_config: dict[str, Any]) -> bool:
    return ds_config.get("zero_optimization", {}).get("stage") == 3


@contextlib.contextmanager
def partitioned_loading(ds_config: dict[str, Any], use_gpu: bool) -> Iterator[None]:
    """Models loaded in this block arrive partitioned under a ZeRO-3 `ds_config`; every rank must load
    the same model. The switch is global to transformers, so it is off again after the block: a later
    model in the process (a merged export's skeleton, the next in-process trial) is built whole."""
    if not partitions_weights(ds_config):
        yield
        return
    from transformers.integrations import HfDeepSpeedConfig
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from imlsweep.train.engine import connect

    connect(use_gpu)
    switch = HfDeepSpeedConfig(ds_config)  # transformers keeps a weak reference: alive while this block runs
    try:
        yield
    finally:
        unset_hf_deepspeed_config()
        del switch


def is_partitioned(parameter: Any) -> bool:
    return hasattr(parameter, "ds_id")


@contextlib.contextmanager
def gathered(parameters: Iterable[Any]) -> Iterator[None]:
    """The whole values of the partitioned ones of `parameters` on every rank while the block runs; what
    rank 0 writes to them is partitioned again at its end. Every rank must enter it. Whole parameters
    pass through untouched."""
    partitioned = [parameter for parameter in parameters if is_partitioned(parameter)]
    if not partitioned:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=0):
        yield
