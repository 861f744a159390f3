"""Model merging: the methods on hand-made tensors, and whole tiny models merged from their saved
safetensors folders (streamed tensor by tensor) and loaded back with transformers."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from imlsweep.config import ConfigError, validate_config
from imlsweep.train.merge_trial import WEIGHTS_FILE, merge_folders, write_streamed_safetensors
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
