"""A merge trial: its models' saved weights merged tensor by tensor into a new Hugging Face folder, then
evaluated like any trial.

Each tensor is read by its own safetensors `safe_open` from every model (and the base) when it is merged, and
written at once into the output file, whose header is known before any tensor is (names, dtypes and
shapes come from the first model's header): memory holds a few tensors, never a whole model, whatever
the number of models. The output folder is the first model's folder (config, tokenizer) with the merged
`model.safetensors`. LoRA adapters of one base are merged as the models they make: each base tensor plus
each adapter's update of it (`imlsweep.train.lora.AdapterUpdates`), so task vectors are the adapters'
updates; the output is a full model (the base's config, the first adapter's tokenizer). A merge trial's
`train_time_s` is the time the merge took; it trains on no tokens.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

from imlsweep import storage
from imlsweep.errors import UserError
from imlsweep.train.config import TrialConfig
from imlsweep.train.lora import ADAPTER_CONFIG, AdapterUpdates, is_adapter
from imlsweep.train.merging import MergeConfig, TensorLoader, merge_tensor
from imlsweep.train.trial import TrialRun
from imlsweep.trial_dir import TrialDir

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
TORCH_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                "BOOL": torch.bool}
# a tensor's name -> each model's tensor (`load(i)`) and the base's (None when the merge needs none)
TensorSource = Callable[[str], tuple[TensorLoader, torch.Tensor | None]]


class WeightFiles:
    """A Hugging Face folder's safetensors tensors by name (one file, or shards with an index). Headers
    are read once; each tensor is read by its own `safe_open`, so no file stays mapped between reads and
    the process holds only the tensors in use."""

    def __init__(self, folder: Path) -> None:
        from safetensors import safe_open

        self.folder = folder
        index = folder / WEIGHTS_INDEX
        if index.is_file():
            files = sorted({folder / file for file in json.loads(index.read_text())["weight_map"].values()})
        elif (folder / WEIGHTS_FILE).is_file():
            files = [folder / WEIGHTS_FILE]
        else:
            raise UserError(f"{folder}: no {WEIGHTS_FILE} or {WEIGHTS_INDEX}: merging reads safetensors weights")
        self.files: dict[str, Path] = {}
        self.headers: dict[str, tuple[str, list[int]]] = {}
        for file in files:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():
                    piece = handle.get_slice(name)
                    self.files[name] = file
                    self.headers[name] = (piece.get_dtype(), list(piece.get_shape()))

    def names(self) -> list[str]:
        return list(self.files)

    def header(self, name: str) -> tuple[str, list[int]]:
        return self.headers[name]

    def tensor(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        with safe_open(str(self.files[name]), framework="pt") as handle:
            return handle.get_tensor(name)


def write_streamed_safetensors(path: Path, entries: list[tuple[str, str, list[int]]],
                               tensors: Iterable[torch.Tensor]) -> None:
    """A safetensors file from its header (name, dtype, shape per tensor, in order) and the tensors,
    written one at a time as they come."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in entries:
        size = TORCH_DTYPES[dtype].itemsize * int(torch.Size(shape).numel())
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as stream:
        stream.write(struct.pack("<Q", len(encoded)) + encoded)
        for (name, dtype, shape), tensor in zip(entries, tensors, strict=True):
            if list(tensor.shape) != shape:
                raise ValueError(f"{name}: merged shape {list(tensor.shape)}, header says {shape}")
            data = tensor.to(TORCH_DTYPES[dtype]).contiguous().flatten()
            stream.write(data.view(torch.uint8).numpy().tobytes())


def merge_folders(config: MergeConfig, models: list[Path], base: Path | None, out: Path) -> None:
    """Merge `models` (full Hugging Face folders, or LoRA adapters of `base`) into `out`; `base` is needed by
    the methods that use it and by adapters."""
    kinds = [is_adapter(folder) for folder in models]
    if any(kinds) and not all(kinds):
        raise UserError(f"merge: {models[kinds.index(True)]} is a LoRA adapter and {models[kinds.index(False)]} a "
                        "full model: a merge takes full models or LoRA adapters of one base, not both")
    if all(kinds):
        layout, tensors = adapter_tensors(models, base)
        support = [layout.folder, models[0]]  # the base's config, the adapter's tokenizer
    else:
        layout, tensors = full_model_tensors(config, models, base)
        support = [models[0]]
    names = layout.names()
    entries = [(name, *layout.header(name)) for name in names]

    def merged() -> Iterator[torch.Tensor]:
        for name in names:
            load, base_tensor = tensors(name)
            yield merge_tensor(config, load, len(models), base_tensor)

    out.mkdir(parents=True, exist_ok=True)
    for folder in support:  # config, generation config, tokenizer
        for item in folder.iterdir():
            if item.is_file() and not item.name.endswith(".safetensors") and item.name not in (WEIGHTS_INDEX, ADAPTER_CONFIG):
                shutil.copy2(item, out / item.name)
    write_streamed_safetensors(out / WEIGHTS_FILE, entries, merged())


def full_model_tensors(config: MergeConfig, models: list[Path], base: Path | None) -> tuple[WeightFiles, TensorSource]:
    """Full models' tensors as saved; all must have the first model's tensors (and so must the base)."""
    opened = [WeightFiles(folder) for folder in models]
    origin = WeightFiles(base) if base is not None and config.uses_base else None
    names = opened[0].names()
    for files in opened[1:] + ([origin] if origin is not None else []):
        missing = sorted(set(names) - set(files.names()))
        if missing:
            raise UserError(f"merge: {files.folder} has no tensor {missing[0]} ({len(missing)} missing) of "
                            f"{models[0]}: merged models must share one architecture")

    def tensors(name: str) -> tuple[TensorLoader, torch.Tensor | None]:
        return (lambda index: opened[index].tensor(name)), (origin.tensor(name) if origin is not None else None)

    return opened[0], tensors


def adapter_tensors(models: list[Path], base: Path | None) -> tuple[WeightFiles, TensorSource]:
    """The models LoRA adapters make, tensor by tensor: the base's tensor plus each adapter's update of it
    (float32, so the task vectors are the updates as computed). The adapters must share one base."""
    if base is None:
        raise ValueError("merging LoRA adapters needs the weights of their base")
    adapters = [AdapterUpdates(folder) for folder in models]
    bases = sorted({adapter.base for adapter in adapters})
    if len(bases) > 1:
        raise UserError(f"merge: the adapters have different bases ({', '.join(bases)}): merged LoRA adapters must "
                        "share one base")
    origin = WeightFiles(base)
    for adapter in adapters:
        unknown = sorted(adapter.adapted() - set(origin.names()))
        if unknown:
            raise UserError(f"merge: {adapter.folder} adapts {unknown[0]}, which the base {base} has no tensor of")

    def tensors(name: str) -> tuple[TensorLoader, torch.Tensor]:
        base_tensor = origin.tensor(name)

        def load(index: int) -> torch.Tensor:
            update = adapters[index].update(name)
            return base_tensor if update is None else base_tensor.to(torch.float32) + update

        return load, base_tensor

    return origin, tensors


def local_model(location: str, work: Path, index: int) -> Path:
    """A model folder on this machine: as it is, or copied from a bucket."""
    if not storage.is_remote(location):
        return Path(location)
    folder = work / f"model_{index}"
    storage.download_dir(location, str(folder))
    return folder


def base_folder(config: TrialConfig, work: Path) -> Path:
    """The weights the merged models were fine-tuned from, as safetensors: `merge.base`, else the trial's
    model, as it is when it holds them (a local folder, the hub's files); otherwise (a tiny model, an
    adapter folder: its base with the adapter merged in) loaded as training loads it and saved once."""
    from imlsweep.train.model import load_model, looks_like_path

    model, init_from, folder = config.model, None, None
    if config.merge.base is not None:
        folder = local_model(config.merge.base, work, -1)
        init_from = str(folder)
    elif not model.is_tiny:
        if looks_like_path(model.name) or Path(model.name).is_dir():
            folder = Path(model.name)
        else:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(model.name, allow_patterns=["*.json", "*.safetensors"]))
    if folder is not None and ((folder / WEIGHTS_FILE).is_file() or (folder / WEIGHTS_INDEX).is_file()):
        return folder
    saved = work / "base"
    load_model(model, init_from).save_pretrained(saved, safe_serialization=True)
    return saved


def run_merge_trial(config: TrialConfig, storage_path: str) -> TrialRun:
    """Merge the trial's models, export the result when `train.export_hf`, evaluate it (rank 0 of 1)."""
    from imlsweep.data.tokenizer import load_tokenizer
    from imlsweep.eval.results import scalar_metrics
    from imlsweep.eval.trial import evaluate_in_worker
    from imlsweep.train.model import load_model

    merge = config.merge
    trial_dir = TrialDir.of(storage_path, config.name)
    trial_dir.write_config(config)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        models = [local_model(location, work, index) for index, location in enumerate(merge.models)]
        needs_base = merge.uses_base or any(is_adapter(folder) for folder in models)
        base = base_folder(config, work) if needs_base else None
        merged = work / "merged"
        merge_folders(merge, models, base, merged)
        merge_time_s = time.perf_counter() - start
        if config.train.export_hf:
            storage.upload_dir(str(merged), trial_dir.hf_model)
        model = load_model(config.model, str(merged))
        if config.train.use_gpu and torch.cuda.is_available():
            model = model.to("cuda")
        evaluation = evaluate_in_worker(model, load_tokenizer(config.model.tokenizer_name), config, trial_dir, 0, 1)
    metrics = {"merge_time_s": merge_time_s, "merged_models": len(models), "training_finished": True}
    metrics |= scalar_metrics(evaluation) if evaluation else {}
    return TrialRun(name=config.name, trial_dir=trial_dir.uri, metrics=metrics, checkpoint=None,
                    hf_model_dir=trial_dir.hf_model if config.train.export_hf else None,
                    train_time_s=merge_time_s, train_tokens=0, train_examples=0)
