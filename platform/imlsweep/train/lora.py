"""LoRA trials through peft: `model.lora` wraps the named modules with low-rank updates and freezes the rest.

DeepSpeed optimizes only the adapter (optimizer state included), checkpoints leave the frozen base out,
and the trial's export (hf_model/) is a peft adapter folder: adapter_config.json, whose
`base_model_name_or_path` is what the trial started from (`init_from`, else `model.name`),
adapter_model.safetensors and the tokenizer. `export_merged` writes the base with the adapter merged in
instead, a full Hugging Face model. Wherever weights are loaded from a folder (`init_from`, so later
stages of a sweep; `model.name` in `imlsweep eval run`), an adapter folder is its base with the adapter
merged in (`imlsweep.train.model.load_model`). A merge trial reads an adapter's update of each base weight
(`AdapterUpdates`) tensor by tensor.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from pathlib import Path
from typing import Any

from pydantic import Field

from imlsweep.config import StrictModel
from imlsweep.errors import UserError

ADAPTER_CONFIG = "adapter_config.json"  # peft's name: what marks a folder as an adapter
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# a saved adapter's tensor: the module it adapts (its path in the base model) and the factor
LORA_TENSOR = re.compile(r"base_model\.model\.(?P<module>.+)\.lora_(?P<factor>[AB])\.weight")
TARGETS_KEY = "model.lora.target_modules"


class LoraConfig(StrictModel):
    r: int = Field(default=8, ge=1, description="rank of each update")
    alpha: float = Field(default=16, gt=0, description="updates are scaled by alpha / r")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="dropout on the adapters' input")
    target_modules: list[str] | None = Field(
        default=None, min_length=1, description="modules that get an adapter: a module's name or the last parts "
        "of its dotted path (q_proj, self_attn.q_proj); null: peft's default for the model type")
    export_merged: bool = Field(default=False, description="hf_model/ holds the base with the adapter merged in "
                                "(a full model) instead of the adapter alone")


def default_targets(model_type: str) -> list[str] | None:
    """peft's default target modules for a model type, if it has one."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    return list(DEFAULTS[model_type]) if model_type in DEFAULTS else None


def target_modules(lora: LoraConfig, model_type: str) -> list[str]:
    targets = lora.target_modules or default_targets(model_type)
    if targets is None:
        raise UserError(f"{TARGETS_KEY}: peft has no default target modules for model type {model_type!r}; "
                        "name them")
    return targets


def peft_config(lora: LoraConfig, hf_config: Any) -> Any:
    import peft

    # No task type for encoder-decoders: peft's SEQ_2_SEQ_LM wrapper reads a generation hook that
    # transformers 5 no longer has; the plain PeftModel trains and generates through the model itself.
    return peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                           target_modules=target_modules(lora, hf_config.model_type),
                           task_type=None if hf_config.is_encoder_decoder else "CAUSAL_LM")


def apply_lora(model: Any, lora: LoraConfig) -> Any:
    """The peft model: adapters on the target modules, every other parameter frozen."""
    import peft

    return peft.get_peft_model(model, peft_config(lora, model.config))


def trained_params(model: Any, lora: LoraConfig) -> int:
    """Parameters a LoRA trial trains (what DeepSpeed optimizes): the adapters `lora` puts on `model`,
    every other parameter frozen as `apply_lora` leaves it. `model` gets the adapters in place; built on
    the meta device it costs no memory."""
    import peft
    import torch

    with torch.device("meta"):
        peft.inject_adapter_in_model(peft_config(lora, model.config), model)
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def adaptable_modules(model: Any) -> list[str]:
    """Dotted names of the modules a LoRA adapter can wrap (peft's LoRA layer types)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    kinds = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d,
             torch.nn.MultiheadAttention, Conv1D)
    return [name for name, module in model.named_modules() if name and isinstance(module, kinds)]


def target_problems(lora: LoraConfig, model: Any) -> list[tuple[str, str]]:
    """(target, why) for each target module that matches no module of `model` an adapter can wrap, by
    peft's rule (the whole dotted name, or its last parts). `model` may live on the meta device."""
    model_type = model.config.model_type
    targets = lora.target_modules or default_targets(model_type)
    if targets is None:
        return [("null", f"leaves the choice to peft, which has no default for model type {model_type!r}: "
                 "name the modules")]
    names = adaptable_modules(model)
    short_names = sorted({name.rsplit(".", 1)[-1] for name in names})
    problems = []
    for target in targets:
        if not any(name == target or name.endswith("." + target) for name in names):
            near = difflib.get_close_matches(target, short_names, n=1, cutoff=0.0)
            problems.append((target, f"matches no layer of {model_type!r} an adapter can wrap "
                             f"({', '.join(short_names)})" + (f"; did you mean {near[0]!r}?" if near else "")))
    return problems


def adapter_base(folder: str | None) -> str | None:
    """The base of an adapter folder (`base_model_name_or_path`), or None when `folder` is not one."""
    if folder is None:
        return None
    path = Path(folder).expanduser() / ADAPTER_CONFIG
    if not path.is_file():
        return None
    base = json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise UserError(f"{folder}: {ADAPTER_CONFIG} names no base_model_name_or_path")
    return base


def merge_adapter(base: Any, folder: str) -> Any:
    """`base` with the adapter in `folder` merged into its weights: a plain transformers model. A base
    partitioned under ZeRO-3 has each wrapped layer's weights gathered while the adapter is added to them
    (peft's own merge would write to empty partitions)."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    from imlsweep.train.partition import gathered

    model = PeftModel.from_pretrained(base, folder)
    for module in model.modules():
        if isinstance(module, LoraLayer):
            with gathered(module.get_base_layer().parameters()):
                module.merge()
    return model.unload()


def save_adapter(peft_model: Any, state: dict[str, Any], base: str, out_dir: str) -> None:
    """The adapter weights of `state` (keys as in `peft_model.state_dict()`) as a peft adapter folder whose
    base is `base`."""
    config = peft_model.peft_config["default"]
    config.base_model_name_or_path = base
    # "auto" would ask the hub whether the vocabulary grew; the embeddings are frozen here
    peft_model.save_pretrained(out_dir, state_dict=state, save_embedding_layers=False, safe_serialization=True)


def merged_model(peft_model: Any, state: dict[str, Any]) -> Any:
    """A transformers model holding `state` (the whole peft model's weights) with the adapter merged in.
    Built on the meta device and given `state`'s tensors, so no second initialised copy is made."""
    import peft
    import torch

    # merging adds to the wrapped layers' weights in place: those are copied, so the trained model (whose
    # live tensors `state` holds under ZeRO 0-2) stays as it is
    state = {key: value.clone() if ".base_layer." in key else value for key, value in state.items()}
    base = peft_model.get_base_model()
    with torch.device("meta"):
        skeleton = peft.get_peft_model(type(base)._from_config(copy.deepcopy(base.config)),
                                       copy.deepcopy(peft_model.peft_config["default"]))
    skeleton.load_state_dict(state, assign=True)
    return skeleton.merge_and_unload()


def is_adapter(folder: Path) -> bool:
    return (folder / ADAPTER_CONFIG).is_file()


class AdapterUpdates:
    """A LoRA adapter folder's update of each base weight it adapts, computed as peft merges it (lora_alpha / r
    x B @ A, transposed for fan_in_fan_out layers) and read from the folder one weight at a time."""

    def __init__(self, folder: Path) -> None:
        from safetensors import safe_open

        self.folder, self.base = folder, adapter_base(str(folder))
        settings = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        # settings that would scale some updates otherwise (peft's defaults leave them unset)
        rescaled = [key for key in ("use_rslora", "rank_pattern", "alpha_pattern") if settings.get(key)]
        if rescaled:
            raise UserError(f"{folder}: {ADAPTER_CONFIG} sets {rescaled[0]}: merging reads adapters scaled by "
                            "lora_alpha / r alone")
        self.scaling = settings["lora_alpha"] / settings["r"]
        self.transposed = bool(settings.get("fan_in_fan_out"))
        self.factors: dict[str, dict[str, str]] = {}
        with safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt") as handle:
            for key in handle.keys():
                match = LORA_TENSOR.fullmatch(key)
                if match is None:
                    raise UserError(f"{folder}: {ADAPTER_WEIGHTS} holds {key}, not a LoRA factor (lora_A / lora_B "
                                    "weight of a layer): merging reads plain LoRA adapters")
                self.factors.setdefault(f"{match['module']}.weight", {})[match["factor"]] = key

    def adapted(self) -> set[str]:
        """The base weights the adapter updates."""
        return set(self.factors)

    def update(self, name: str) -> Any:
        """The float32 update of base weight `name`, or None where the adapter leaves it as it is."""
        from safetensors import safe_open

        factors = self.factors.get(name)
        if factors is None:
            return None
        with safe_open(str(self.folder / ADAPTER_WEIGHTS), framework="pt") as handle:
            a, b = (handle.get_tensor(factors[factor]).float() for factor in "AB")
        update = (b @ a) * self.scaling
        return update.T if self.transposed else update
