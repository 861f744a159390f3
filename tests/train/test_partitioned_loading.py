"""Partitioned loading under ZeRO-3 (`imlsweep.train.partition`): two real DeepSpeed ranks (gloo, on CPU)
load each model inside `partitioned_loading`. Each rank holds half of every parameter, and the gathered
weights equal what one process loads without DeepSpeed: a pretrained folder (`from_pretrained`, tiny
OPT), a tiny T5 built from its config at a seed, and an adapter folder (its tiny seeded Llama base,
partitioned, with the adapter merged in)."""

from __future__ import annotations

import math
import os
from datetime import timedelta

import pytest
import torch

from imlsweep.train.config import TrainConfig
from imlsweep.train.deepspeed_config import deepspeed_config
from imlsweep.train.lora import LoraConfig, apply_lora, save_adapter
from imlsweep.train.model import ModelConfig, load_model

WORLD_SIZE = 2


def cases(tmp_path) -> dict[str, tuple[ModelConfig, str | None]]:
    """name -> (model config, init_from); writes the folders the cases load."""
    pretrained = tmp_path / "pretrained"
    load_model(ModelConfig(name="tiny-opt", seed=5)).save_pretrained(pretrained)
    base = ModelConfig(name="tiny-llama", seed=1)
    adapted = apply_lora(load_model(base), LoraConfig(r=4))
    with torch.no_grad():  # a fresh adapter adds nothing (its B is 0): give it something to merge
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.normal_(generator=torch.Generator().manual_seed(len(name)))
    save_adapter(adapted, adapted.state_dict(), "tiny-llama", str(tmp_path / "adapter"))
    return {"pretrained": (ModelConfig(name=str(pretrained)), None),
            "seeded": (ModelConfig(name="tiny-t5", seed=3), None),
            "adapter": (base, str(tmp_path / "adapter"))}


def load_on_rank(rank: int, store: str, models: dict[str, tuple[ModelConfig, str | None]], out: str) -> None:
    """One rank: load every model partitioned; save each parameter's partition size and whole value."""
    import torch.distributed as dist

    from imlsweep.train.partition import gathered, is_partitioned, partitioned_loading

    os.environ["LOCAL_RANK"] = str(rank)  # as a launcher sets it: DeepSpeed picks its device by it
    dist.init_process_group("gloo", store=dist.FileStore(store, WORLD_SIZE), rank=rank, world_size=WORLD_SIZE,
                            timeout=timedelta(seconds=120))  # a rank that fails ends the other's wait
    ds_config = deepspeed_config(TrainConfig(workers=WORLD_SIZE, zero_stage=3, precision="fp32"))
    loaded = {}
    for name, (config, init_from) in models.items():
        with partitioned_loading(ds_config, use_gpu=False):
            model = load_model(config, init_from)
        parameters = {}
        for key, parameter in model.named_parameters():
            assert is_partitioned(parameter) and parameter.numel() == 0, key
            partition = parameter.ds_tensor.numel()
            with gathered([parameter]):
                parameters[key] = (partition, parameter.detach().clone())
        loaded[name] = {"parameters": parameters, "buffers": dict(model.named_buffers())}
    torch.save(loaded, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_zero3_ranks_hold_half_of_each_parameter_and_load_what_one_process_loads(tmp_path):
    models = cases(tmp_path)
    torch.multiprocessing.spawn(load_on_rank, args=(str(tmp_path / "store"), models, str(tmp_path)),
                                nprocs=WORLD_SIZE)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]
    for name, (config, init_from) in models.items():
        whole = load_model(config, init_from)
        expected = dict(whole.named_parameters())
        assert len(expected) > 10
        for loaded in ranks:
            parameters = loaded[name]["parameters"]
            assert parameters.keys() == expected.keys(), name
            for key, (partition, value) in parameters.items():
                assert partition == math.ceil(expected[key].numel() / WORLD_SIZE), (name, key)
                assert torch.equal(value, expected[key].detach()), (name, key)
            buffers = dict(whole.named_buffers())
            assert loaded[name]["buffers"].keys() == buffers.keys()
            for key, buffer in buffers.items():
                assert torch.equal(loaded[name]["buffers"][key], buffer), (name, key)
