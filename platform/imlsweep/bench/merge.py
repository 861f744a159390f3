"""`imlsweep bench merge`: a merge streamed tensor by tensor from the models' safetensors files (what a
merge trial does) against the same merge with every model's weights loaded first (the way a merge
is usually written: a state dict per model), on the same saved models and method.

Each way runs in a fresh process, which reports its peak RSS (VmHWM) and its RSS before merging; the
figure is the peak above that start, against the models' total size. Both outputs must be equal. The
models are Llamas built from a config sized by --hidden / --layers / --vocab, each the seeded init
plus seeded noise (a stand-in for fine-tuned models), saved once in --workdir.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

from imlsweep.output import print_figures

WAYS = ("streamed", "in_memory")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=int, default=8, help="models merged")
    parser.add_argument("--method", default="ties", choices=["uniform", "task_arithmetic", "ties"])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--workdir", default=None, help="where the models are saved (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="3 small models, for a smoke test")


def rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def save_models(root: Path, count: int, hidden: int, layers: int, vocab: int) -> tuple[list[Path], Path]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=hidden, intermediate_size=hidden * 8 // 3, num_hidden_layers=layers,
                         num_attention_heads=max(1, hidden // 64), num_key_value_heads=max(1, hidden // 64),
                         vocab_size=vocab, tie_word_embeddings=True)
    base_dir, model_dirs = root / "base", [root / f"model_{index}" for index in range(count)]
    if base_dir.is_dir() and all(folder.is_dir() for folder in model_dirs):
        return model_dirs, base_dir
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(base_dir, safe_serialization=True)
    base = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    for index, folder in enumerate(model_dirs):
        generator = torch.Generator().manual_seed(index + 1)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                parameter.copy_(base[name] + 0.01 * torch.randn(parameter.shape, generator=generator))
        model.save_pretrained(folder, safe_serialization=True)
    return model_dirs, base_dir


def merge_one_way(way: str, method: str, models: list[str], base: str, out: str, results: Any) -> None:
    """In a fresh process: merge, and put (way, RSS before, peak RSS, seconds) on `results`."""
    import torch  # noqa: F401 (imported before the start figure, as both ways need it)
    from safetensors.torch import load_file, save_file

    from imlsweep.train.merge_trial import WEIGHTS_FILE, merge_folders
    from imlsweep.train.merging import MergeConfig, merge_tensor

    config = MergeConfig(method=method, models=models, base=base)
    before, start = rss_mb("VmRSS"), time.perf_counter()
    if way == "streamed":
        merge_folders(config, [Path(m) for m in models], Path(base), Path(out))
    else:
        states = [load_file(str(Path(m) / WEIGHTS_FILE)) for m in models]
        origin = load_file(str(Path(base) / WEIGHTS_FILE))
        merged = {name: merge_tensor(config, lambda index: states[index][name], len(states), origin[name])
                  for name in states[0]}
        Path(out).mkdir(parents=True, exist_ok=True)
        save_file(merged, str(Path(out) / WEIGHTS_FILE), metadata={"format": "pt"})
    results.put((way, before, rss_mb("VmHWM"), time.perf_counter() - start))


def run(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import load_file

    from imlsweep.train.merge_trial import WEIGHTS_FILE

    count, hidden, layers, vocab = (3, 128, 2, 4096) if args.quick else (args.models, args.hidden, args.layers, args.vocab)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.workdir) if args.workdir else Path(scratch)
        models, base = save_models(root / f"models_{count}x{hidden}x{layers}x{vocab}", count, hidden, layers, vocab)
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        figures: dict[str, Any] = {"models": count, "method": args.method,
                                   "model_mb": (models[0] / WEIGHTS_FILE).stat().st_size / 2**20}
        for way in WAYS:
            process = context.Process(target=merge_one_way, args=(way, args.method, [str(m) for m in models],
                                                                  str(base), str(Path(scratch) / way), results))
            process.start()
            _, before, peak, seconds = results.get()
            process.join()
            figures[way] = {"peak_rss_mb": peak, "rss_before_mb": before, "peak_above_start_mb": peak - before,
                            "seconds": seconds}
        streamed = load_file(str(Path(scratch) / "streamed" / WEIGHTS_FILE))
        in_memory = load_file(str(Path(scratch) / "in_memory" / WEIGHTS_FILE))
        figures["same_weights"] = streamed.keys() == in_memory.keys() and all(
            torch.equal(streamed[name], in_memory[name]) for name in streamed)
    figures["models_total_mb"] = figures["model_mb"] * count
    figures["memory_ratio"] = figures["in_memory"]["peak_above_start_mb"] / max(
        figures["streamed"]["peak_above_start_mb"], 1e-9)
    figures["time_ratio"] = figures["streamed"]["seconds"] / figures["in_memory"]["seconds"]
    print_figures(figures, args.json)
    return 0 if figures["same_weights"] else 1
