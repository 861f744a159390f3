"""Models: a hub id or local path through `from_pretrained`, or a tiny model built from a bundled config.

`tiny-llama`, `tiny-opt` (decoder-only) and `tiny-t5` (encoder-decoder) are built from
`assets/tiny_models/<name>.json` with the bundled tokenizer: what tests and the quickstart train.
A folder holding a LoRA adapter (a LoRA trial's export, `imlsweep.train.lora`) loads as its base with the
adapter merged in.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, PretrainedConfig, PreTrainedModel

from imlsweep.assets import HUB_CONFIGS_DIR, TINY_MODELS_DIR
from imlsweep.config import StrictModel
from imlsweep.data.tokenizer import TINY_TOKENIZER
from imlsweep.train.attention import (AttentionPath, attention_dropout, choose_attention_path, flash_attn_installed,
                                      torch_has_flex)
from imlsweep.errors import UserError
from imlsweep import storage
from imlsweep.train.lora import TARGETS_KEY, LoraConfig, adapter_base, merge_adapter, target_problems
from imlsweep.train.partition import gathered

ModelKind = Literal["causal", "seq2seq"]


class ModelConfig(StrictModel):
    name: str = Field(description="hub id, local folder, or a bundled tiny model: " + ", ".join(
        sorted(p.stem for p in TINY_MODELS_DIR.glob("*.json"))))
    tokenizer: str | None = Field(default=None, description="defaults to the model's own (or `tiny`)")
    dropout: float | None = Field(default=0.1, description="override of every dropout rate; null keeps the model's")
    seed: int = Field(default=0, description="initialisation seed of tiny models")
    lora: LoraConfig | None = Field(default=None, description="train LoRA adapters (peft) instead of every weight")

    @property
    def is_tiny(self) -> bool:
        return (TINY_MODELS_DIR / f"{self.name}.json").is_file()

    @property
    def tokenizer_name(self) -> str:
        if self.tokenizer is not None:
            return self.tokenizer
        return TINY_TOKENIZER if self.is_tiny else self.name


def model_config(config: ModelConfig) -> PretrainedConfig:
    """The transformers config, without loading weights; fails early on an unknown model."""
    base = adapter_base(config.name)
    if base is not None:
        return model_config(config.model_copy(update={"name": base}))
    if config.is_tiny:
        hf_config = config_from_file(TINY_MODELS_DIR / f"{config.name}.json")
    else:
        if looks_like_path(config.name) and not Path(config.name).exists():
            raise UserError(f"model.name: local path {config.name!r} does not exist")
        try:
            hf_config = AutoConfig.from_pretrained(config.name)
        except (OSError, ValueError) as error:
            raise UserError(f"model.name: {config.name!r} is neither a bundled tiny model, a local folder "
                            f"nor a reachable hub id ({error})") from None
    return with_dropout(hf_config, config.dropout)


def architecture_config(config: ModelConfig) -> PretrainedConfig | None:
    """The model's config without weights or network (what the memory planner reads): a bundled tiny
    model, a local folder, the Hugging Face cache, or the package's copy of a study model's config.json
    (`assets/hub_configs/<owner>--<name>.json`); None when none of them has it."""
    if config.is_tiny or Path(config.name).expanduser().is_dir():
        try:
            return model_config(config)
        except UserError:
            return None
    try:
        return with_dropout(AutoConfig.from_pretrained(config.name, local_files_only=True), config.dropout)
    except (OSError, ValueError):
        bundled = HUB_CONFIGS_DIR / f"{config.name.replace('/', '--')}.json"
        return with_dropout(config_from_file(bundled), config.dropout) if bundled.is_file() else None


def config_from_file(path: Path) -> PretrainedConfig:
    values = json.loads(path.read_text())
    model_type = values.pop("model_type")
    return AutoConfig.for_model(model_type, **values)


def with_dropout(hf_config: PretrainedConfig, dropout: float | None) -> PretrainedConfig:
    """Every dropout rate of the config set to `dropout` (None keeps the model's)."""
    if dropout is not None:
        for key in ("dropout", "dropout_rate", "attention_dropout", "hidden_dropout", "embd_pdrop",
                    "resid_pdrop", "attn_pdrop", "hidden_dropout_prob", "attention_probs_dropout_prob"):
            if hasattr(hf_config, key):
                setattr(hf_config, key, dropout)
    return hf_config


def model_kind(hf_config: PretrainedConfig) -> ModelKind:
    return "seq2seq" if hf_config.is_encoder_decoder else "causal"


def auto_class(hf_config: PretrainedConfig) -> type:
    return AutoModelForSeq2SeqLM if model_kind(hf_config) == "seq2seq" else AutoModelForCausalLM


def attention_path(hf_config: PretrainedConfig, use_gpu: bool) -> AttentionPath:
    """The document-attention path of a trial on this machine (see `imlsweep.train.attention`)."""
    cls = model_class(hf_config)
    return choose_attention_path(use_gpu=use_gpu, flash_attn_installed=flash_attn_installed(),
                                 torch_has_flex=torch_has_flex(), encoder_decoder=model_kind(hf_config) == "seq2seq",
                                 model_supports_flash=bool(getattr(cls, "_supports_flash_attn", False)),
                                 model_supports_flex=bool(getattr(cls, "_supports_flex_attn", False)),
                                 attention_dropout=attention_dropout(hf_config))


def model_class(hf_config: PretrainedConfig) -> type[PreTrainedModel]:
    """The class `load_model` builds for a config, without building it."""
    return auto_class(hf_config)._model_mapping[type(hf_config)]


def cannot_checkpoint_activations(hf_config: PretrainedConfig) -> str | None:
    """Why the model of `hf_config` cannot take `train.activation_checkpointing`, or None when it can."""
    cls = model_class(hf_config)
    return None if cls.supports_gradient_checkpointing else f"{cls.__name__} cannot checkpoint activations"


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Each layer's activations recomputed in the backward pass. Non-reentrant checkpointing: it takes
    the 4-D document mask and keyword arguments of packed rows, and restores the RNG state, so dropout
    draws the same masks when a layer is recomputed."""
    problem = cannot_checkpoint_activations(model.config)
    if problem:
        raise UserError(f"train.activation_checkpointing: {problem}")
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def load_model(config: ModelConfig, init_from: str | None = None,
               attn_implementation: str | None = None) -> PreTrainedModel:
    """Weights from `init_from` (an HF folder) if given, else the model's own, else a seeded init; an
    adapter folder is its base with the adapter merged in. `attn_implementation` (e.g. `flex_attention`,
    see `attention_path`) is passed to transformers when set. The trial's own `lora` is not applied here."""
    if init_from is not None and storage.is_remote(init_from):
        # transformers loads local folders only: an s3:// / gs:// folder (an earlier stage's hf_model) is copied first
        with tempfile.TemporaryDirectory() as local_copy:
            storage.download_dir(init_from, local_copy)
            return load_model(config, local_copy, attn_implementation)
    source = init_from or (None if config.is_tiny else config.name)
    base = adapter_base(source)
    if base is not None:
        return merge_adapter(load_model(*adapter_base_source(config, init_from, base), attn_implementation), source)
    hf_config = model_config(config)
    auto = auto_class(hf_config)
    options = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if source is None:
        return seeded_init(auto.from_config(hf_config, **options), config.seed)
    return auto.from_pretrained(source, config=hf_config, **options)


def seeded_init(model: PreTrainedModel, seed: int) -> PreTrainedModel:
    """`model` with every module's weights drawn again by the model's own `_init_weights`, from the RNG
    seeded by (`seed`, the module's name). A tiny model then starts from the same weights whether it was
    built whole or partitioned (`imlsweep.train.partition`: there construction draws nothing and
    transformers initialises on rank 0 alone, so one global seed gives other weights than a whole build,
    whose modules draw torch's default initialisation first).
    Each module's parameters and its children's (which `_init_weights` may set) are gathered meanwhile."""
    import torch

    def visit(module: torch.nn.Module, name: str, owner: PreTrainedModel) -> None:
        for child_name, child in module.named_children():  # children first, as transformers initialises
            visit(child, f"{name}.{child_name}" if name else child_name,
                  child if isinstance(child, PreTrainedModel) else owner)
        parameters = {id(p): p for m in (module, *module.children()) for p in m.parameters(recurse=False)}
        torch.manual_seed(module_seed(seed, name))
        with gathered(parameters.values()):
            owner._init_weights(module)

    with torch.no_grad():
        visit(model, "", model)
    return model


def module_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "little")


def adapter_base_source(config: ModelConfig, init_from: str | None, base: str) -> tuple[ModelConfig, str | None]:
    """(model config, init_from) that load an adapter's base: a folder (or bucket) is weights to start from;
    a hub id or tiny model is the model itself, built with this config's other settings (a tiny base
    with its `seed`)."""
    if looks_like_path(base) or storage.is_remote(base) or Path(base).is_dir():
        return config, base
    if init_from is not None and base != config.name:
        raise UserError(f"init_from: {init_from!r} is an adapter of {base!r}, not of model.name {config.name!r}")
    return config.model_copy(update={"name": base}), None


def meta_model(hf_config: PretrainedConfig) -> PreTrainedModel:
    """The model's modules on the meta device: names and shapes, no weights, no memory."""
    import torch

    with torch.device("meta"):
        return auto_class(hf_config).from_config(hf_config)


def unmatched_lora_targets(config: ModelConfig) -> list[tuple[str, str, str]]:
    """(key, value, why) for each LoRA target module that matches nothing in the model."""
    hf_config = architecture_config(config) if config.lora is not None else None
    if hf_config is None:  # no LoRA, or a model whose config is not at hand (reported where it is needed)
        return []
    return [(TARGETS_KEY, target, why) for target, why in target_problems(config.lora, meta_model(hf_config))]


def looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1
