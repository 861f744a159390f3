"""Model merging: the methods on hand-made tensors, and whole tiny models merged from their saved
safetensors folders (streamed tensor by tensor) and loaded back with transformers: full models, and LoRA
adapters of one base (merged as the models they make)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from imlsweep.config import ConfigError, validate_config
from imlsweep.errors import UserError
from imlsweep.train.merge_trial import WEIGHTS_FILE, merge_folders, write_streamed_safetensors
from imlsweep.train.lora import ADAPTER_CONFIG, LoraConfig, apply_lora, save_adapter
from imlsweep.train.merging import MergeConfig, merge_tensor, trimmed
from imlsweep.train.model import ModelConfig, load_model

TINY = ModelConfig(name="tiny-llama")


def merge_of(method: str, tensors: list[torch.Tensor], base: torch.Tensor | None = None, **settings) -> torch.Tensor:
    config = MergeConfig(method=method, models=[f"m{i}" for i in range(len(tensors))], **settings)
    return merge_tensor(config, lambda index: tensors[index], len(tensors), base)


def test_trim_keeps_the_largest_magnitudes():
    assert trimmed(torch.tensor([1.0, -2.0, 0.1, 3.0]), 0.5).tolist() == [0.0, -2.0, 0.0, 3.0]
    assert trimmed(torch.tensor([1.0, -2.0]), 1.0).tolist() == [1.0, -2.0]


def test_ties_elects_signs_by_mass_and_averages_the_agreeing_values():
    base = torch.zeros(3)
    merged = merge_of("ties", [torch.tensor([1.0, -2.0, 0.1]), torch.tensor([3.0, 1.0, -0.2])], base,
                      density=1.0, scale=1.0)
    # mass [4, -1, -0.1]: signs +, -, -; agreeing means 2, -2, -0.2
    assert torch.allclose(merged, torch.tensor([2.0, -2.0, -0.2]))
    trimmed_merge = merge_of("ties", [torch.tensor([1.0, -2.0, 0.1]), torch.tensor([3.0, 1.0, -0.2])], base,
                             density=0.5, scale=0.5)  # keeps 2 of 3: [1, -2, 0] and [3, 1, 0]
    assert torch.allclose(trimmed_merge, torch.tensor([1.0, -1.0, 0.0]))  # 0.5 x (2, -2, 0)


def test_uniform_and_task_arithmetic_on_tensors():
    a, b, base = torch.tensor([1.0, 2.0]), torch.tensor([3.0, -2.0]), torch.tensor([1.0, 1.0])
    assert merge_of("uniform", [a, b]).tolist() == [2.0, 0.0]
    assert merge_of("task_arithmetic", [a, b], base, scale=0.5).tolist() == [2.0, 0.0]  # 1 + 0.5 * (0+2, 1-3)
    integers = torch.arange(4)
    assert merge_of("uniform", [integers, integers + 1]) is integers  # buffers are not merged


def test_merge_settings_are_checked():
    with pytest.raises(ConfigError, match="density"):
        validate_config({"method": "ties", "density": 0, "models": ["a"]}, MergeConfig, "merge")
    with pytest.raises(ConfigError, match="repeat"):
        validate_config({"models": ["a", "a"]}, MergeConfig, "merge")


def test_streamed_safetensors_reads_back(tmp_path):
    tensors = {"b": torch.randn(3, 2).to(torch.bfloat16), "a": torch.arange(5, dtype=torch.int64)}
    entries = [("b", "BF16", [3, 2]), ("a", "I64", [5])]
    write_streamed_safetensors(tmp_path / "x.safetensors", entries, iter([tensors["b"], tensors["a"]]))
    read = load_file(tmp_path / "x.safetensors")
    assert torch.equal(read["b"], tensors["b"]) and torch.equal(read["a"], tensors["a"])


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    """A tiny Llama's seeded init (the base) and a fine-tuned stand-in (base + noise), saved as HF folders."""
    root = tmp_path_factory.mktemp("merging")
    base = load_model(TINY)
    base.save_pretrained(root / "base", safe_serialization=True)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in base.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    base.save_pretrained(root / "tuned", safe_serialization=True)
    return root


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(folder / WEIGHTS_FILE)


def test_averaging_two_copies_of_a_model_gives_that_model(tiny_folders, tmp_path):
    shutil.copytree(tiny_folders / "tuned", tmp_path / "copy")
    merge_folders(MergeConfig(method="uniform", models=["tuned", "copy"]), [tiny_folders / "tuned", tmp_path / "copy"],
                  None, tmp_path / "merged")
    tuned, merged = weights(tiny_folders / "tuned"), weights(tmp_path / "merged")
    assert tuned.keys() == merged.keys() and all(torch.equal(tuned[name], merged[name]) for name in tuned)
    model = load_model(TINY, str(tmp_path / "merged"))  # transformers loads the merged folder
    reference = load_model(TINY, str(tiny_folders / "tuned"))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))


def test_ties_with_everything_kept_and_one_model_gives_that_model(tiny_folders, tmp_path):
    config = MergeConfig(method="ties", density=1.0, scale=1.0, models=["tuned"])
    merge_folders(config, [tiny_folders / "tuned"], tiny_folders / "base", tmp_path / "merged")
    tuned, merged = weights(tiny_folders / "tuned"), weights(tmp_path / "merged")
    assert all(torch.allclose(tuned[name], merged[name], atol=1e-6) for name in tuned)
    base = weights(tiny_folders / "base")
    assert not all(torch.allclose(base[name], merged[name]) for name in base)


def test_task_arithmetic_with_coefficient_zero_gives_the_base(tiny_folders, tmp_path):
    shutil.copytree(tiny_folders / "tuned", tmp_path / "other")
    config = MergeConfig(method="task_arithmetic", scale=0.0, models=["tuned", "other"])
    merge_folders(config, [tiny_folders / "tuned", tmp_path / "other"], tiny_folders / "base", tmp_path / "merged")
    base, merged = weights(tiny_folders / "base"), weights(tmp_path / "merged")
    assert all(torch.equal(base[name], merged[name]) for name in base)


def test_models_of_another_architecture_are_named(tiny_folders, tmp_path):
    (tmp_path / "odd").mkdir()
    save_file({"other.weight": torch.zeros(2)}, tmp_path / "odd" / WEIGHTS_FILE)
    with pytest.raises(Exception, match="odd has no tensor"):
        merge_folders(MergeConfig(method="uniform", models=["a", "b"]), [tiny_folders / "tuned", tmp_path / "odd"],
                      None, tmp_path / "merged")


@pytest.fixture(scope="module")
def tiny_adapters(tmp_path_factory):
    """The tiny Llama's seeded init (the base, saved) and two LoRA adapters of it with random factors
    (peft starts B at zero, which would make every adapter a no-op)."""
    root = tmp_path_factory.mktemp("adapters")
    load_model(TINY).save_pretrained(root / "base", safe_serialization=True)
    for index in range(2):
        model = apply_lora(load_model(TINY), LoraConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
        generator = torch.Generator().manual_seed(index)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_" in name:
                    parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
        save_adapter(model, model.state_dict(), TINY.name, str(root / f"adapter_{index}"))
    return root


def model_weights(folder) -> dict[str, torch.Tensor]:
    """A folder's model as transformers loads it (an adapter folder: its base with the adapter merged in)."""
    return load_model(TINY, str(folder)).state_dict()


def test_averaging_two_copies_of_an_adapter_gives_that_adapters_model(tiny_adapters, tmp_path):
    shutil.copytree(tiny_adapters / "adapter_0", tmp_path / "copy")
    config = MergeConfig(method="uniform", models=["a", "copy"])
    merge_folders(config, [tiny_adapters / "adapter_0", tmp_path / "copy"], tiny_adapters / "base", tmp_path / "merged")
    assert not (tmp_path / "merged" / ADAPTER_CONFIG).exists()  # a full model, loaded like any trial's
    merged, adapted = model_weights(tmp_path / "merged"), model_weights(tiny_adapters / "adapter_0")
    assert merged.keys() == adapted.keys() and all(torch.equal(merged[name], adapted[name]) for name in merged)
    base = model_weights(tiny_adapters / "base")
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])


def test_task_arithmetic_of_adapters_with_coefficient_zero_gives_the_base(tiny_adapters, tmp_path):
    config = MergeConfig(method="task_arithmetic", scale=0.0, models=["a", "b"])
    merge_folders(config, [tiny_adapters / "adapter_0", tiny_adapters / "adapter_1"], tiny_adapters / "base",
                  tmp_path / "merged")
    base, merged = weights(tiny_adapters / "base"), weights(tmp_path / "merged")
    assert base.keys() == merged.keys() and all(torch.equal(base[name], merged[name]) for name in base)


def test_ties_with_everything_kept_and_one_adapter_gives_base_plus_adapter(tiny_adapters, tmp_path):
    config = MergeConfig(method="ties", density=1.0, scale=1.0, models=["a"])
    merge_folders(config, [tiny_adapters / "adapter_1"], tiny_adapters / "base", tmp_path / "merged")
    merged, adapted = model_weights(tmp_path / "merged"), model_weights(tiny_adapters / "adapter_1")
    assert all(torch.allclose(merged[name], adapted[name], atol=1e-6) for name in merged)


def test_ties_of_adapters_merges_their_updates(tiny_adapters, tmp_path):
    config = MergeConfig(method="ties", density=0.5, scale=1.0, models=["a", "b"])
    merge_folders(config, [tiny_adapters / "adapter_0", tiny_adapters / "adapter_1"], tiny_adapters / "base",
                  tmp_path / "merged")
    base, merged = weights(tiny_adapters / "base"), weights(tmp_path / "merged")
    name = "model.layers.0.self_attn.v_proj.weight"
    updates = [model_weights(tiny_adapters / f"adapter_{i}")[name] - base[name] for i in range(2)]
    expected = merge_of("ties", [base[name] + update for update in updates], base[name], density=0.5)
    assert torch.allclose(merged[name], expected, atol=1e-6)
    assert torch.equal(merged["model.layers.0.self_attn.k_proj.weight"], base["model.layers.0.self_attn.k_proj.weight"])


def test_adapters_of_different_bases_and_mixed_kinds_are_refused(tiny_adapters, tiny_folders, tmp_path):
    shutil.copytree(tiny_adapters / "adapter_1", tmp_path / "other")
    settings = json.loads((tmp_path / "other" / ADAPTER_CONFIG).read_text())
    (tmp_path / "other" / ADAPTER_CONFIG).write_text(json.dumps(settings | {"base_model_name_or_path": "tiny-opt"}))
    config = MergeConfig(method="uniform", models=["a", "b"])
    with pytest.raises(UserError, match="different bases \\(tiny-llama, tiny-opt\\)"):
        merge_folders(config, [tiny_adapters / "adapter_0", tmp_path / "other"], tiny_adapters / "base", tmp_path / "m")
    with pytest.raises(UserError, match="adapter_0 is a LoRA adapter and .*tuned a full model"):
        merge_folders(config, [tiny_folders / "tuned", tiny_adapters / "adapter_0"], tiny_adapters / "base", tmp_path / "m")
