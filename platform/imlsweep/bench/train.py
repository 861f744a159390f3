"""`imlsweep bench train`: target tokens/s with packing vs with padding, same model and examples.

The examples are the bundled SuperNI sample's training instances, rendered with the SuperNI
encoding (definition + 2 positive examples) and tokenized by the data stage, so their lengths follow
SuperNI's distribution. Each layout trains on all of them once through a DeepSpeed engine built from
the trainer's own config and loss (`deepspeed_config`, `batch_loss`):

- packed: examples packed into `--seq-len` rows with document attention (the platform's way);
- padded: one example per row, padded to `--seq-len` (the baseline the goal is stated against);
- padded_to_batch_max: one example per row, padded to the longest row of its batch.

An encoder-decoder model (`--model tiny-t5`) trains the same way on (source, target) pairs: sources
packed into encoder rows of `--seq-len` and their targets into decoder rows of `--target-len`, against
pairs padded to those lengths or to their batch's longest. The document-attention path the trainer
would take on this machine (`imlsweep.train.attention`) is the one measured, and reported.

On a GPU it also measures model FLOPs utilisation for a ~1B decoder on packed 2048-token rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from imlsweep.output import print_json

if TYPE_CHECKING:
    from imlsweep.data.packing import TokenizedExamples
    from imlsweep.train.attention import AttentionPath

# ~1.1B parameters, Llama layout (the MFU figure on GPU)
DECODER_1B = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
              "num_attention_heads": 16, "num_key_value_heads": 16, "max_position_embeddings": 2048,
              "vocab_size": 32000, "tie_word_embeddings": False}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="few examples, short rows (seconds; for tests)")
    parser.add_argument("--model", default="tiny-llama", help="model of the packed/padded comparison (default tiny-llama)")
    parser.add_argument("--seq-len", type=int, help="row length; encoder-decoder: the source row (default 2048, "
                        "encoder-decoder 1024; --quick 512)")
    parser.add_argument("--target-len", type=int, default=128, help="encoder-decoder: the target row (default 128)")
    parser.add_argument("--examples", type=int, help="examples trained on per layout (default 1024; --quick 12)")
    parser.add_argument("--micro-batch-size", type=int, default=4)
    parser.add_argument("--mfu-steps", type=int, default=10, help="GPU only: steps of the 1B MFU run")
    parser.add_argument("--seed", type=int, default=0)


def log(message: str) -> None:
    print(f"[bench train] {message}", file=sys.stderr, flush=True)


def superni_pairs(tokenizer_name: str, count: int, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    """Source and target ids of up to `count` SuperNI sample training instances, shuffled with the seed."""
    from imlsweep.corpus.build import build_corpus
    from imlsweep.corpus.config import CorpusConfig, resolve_paths
    from imlsweep.data.render import render_examples
    from imlsweep.data.tokenization import token_ids
    from imlsweep.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_name)
    with tempfile.TemporaryDirectory() as workdir:
        config = CorpusConfig.model_validate(
            {"name": "bench", "sources": [{"benchmark": "superni", "format": "superni", "path": "pkg:superni"}]})
        corpus = build_corpus(resolve_paths(config, Path(workdir)), os.path.join(workdir, "corpus"))
        train_tasks = corpus.manifest.loc[corpus.manifest["n_train"] > 0, "task_id"].tolist()
        rendered = render_examples(corpus, train_tasks, "train", "superni_def_pos", seed=seed)
    chosen = [rendered[i] for i in np.random.default_rng(seed).permutation(len(rendered))[:count]]
    return (token_ids(tokenizer, [example.source for example in chosen]),
            token_ids(tokenizer, [example.target for example in chosen]))


def padded_rows(examples: TokenizedExamples, length: int | None, pad_id: int) -> dict[str, list[np.ndarray]]:
    """One example per row, padded to `length` (None: each row to its own length, for batch padding)."""
    from imlsweep.data.packing import PACKED_COLUMNS, unpack_rows

    rows = []
    for index, example_length in enumerate(examples.lengths):
        input_ids = np.full((1, length or example_length), pad_id, dtype=np.int32)
        input_ids[0, :example_length] = examples.ids(index)
        rows.append(unpack_rows({"input_ids": input_ids, "document_lengths": [examples.lengths[index:index + 1]],
                                 "loss_starts": [examples.loss_starts[index:index + 1]]}))
    return {key: [row[key][0] for row in rows] for key in PACKED_COLUMNS}


def batches(rows: dict[str, Any], micro_batch_size: int, pad_id: int):
    """int64 batches of `micro_batch_size` rows, each padded to its longest row."""
    import torch

    fills = {"input_ids": pad_id, "labels": -100, "position_ids": 0, "document_ids": -1}
    count = len(rows["input_ids"])
    for start in range(0, count, micro_batch_size):
        members = range(start, min(start + micro_batch_size, count))
        width = max(len(rows["input_ids"][i]) for i in members)
        batch = {}
        for key, fill in fills.items():
            array = np.full((len(members), width), fill, dtype=np.int64)
            for row, i in enumerate(members):
                array[row, : len(rows[key][i])] = rows[key][i]
            batch[key] = torch.from_numpy(array)
        yield batch


def engine_for(model: Any, micro_batch_size: int, use_gpu: bool) -> Any:
    """A single-process DeepSpeed engine from the trainer's own config."""
    from imlsweep.train.config import TrainConfig
    from imlsweep.train.deepspeed_config import deepspeed_config
    from imlsweep.train.engine import initialize_engine

    train = TrainConfig(gpus_per_worker=int(use_gpu), zero_stage=0 if not use_gpu else 1, precision="bf16" if use_gpu else "fp32",
                        micro_batch_size=micro_batch_size, lr=1e-4, max_steps=1)
    engine, _ = initialize_engine(model, deepspeed_config(train), use_gpu=use_gpu)
    return engine


def train_throughput(engine: Any, batch_list: list[dict[str, Any]], attention: AttentionPath) -> dict[str, float]:
    """Train once over the batches; tokens/s and target tokens/s (warm-up batch excluded)."""
    import torch

    from imlsweep.train.loss import batch_loss
    from imlsweep.train.worker import batch_sizes

    def step(batch: dict[str, Any]) -> int:
        batch = {key: value.to(engine.device) for key, value in batch.items()}
        loss, targets = batch_loss(engine, batch, attention=attention, mask_dtype=engine.module.dtype)
        engine.backward(loss)
        engine.step()
        return int(targets)

    step(batch_list[0])  # warm-up: kernels, allocator
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    target_tokens = sum(step(batch) for batch in batch_list)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = sum(batch_sizes(batch)[0] for batch in batch_list)
    slots = sum(batch["input_ids"].numel() + (batch["labels"].numel() if "document_ids" not in batch else 0)
                for batch in batch_list)
    return {"seconds": seconds, "target_tokens_per_s": target_tokens / seconds, "tokens_per_s": tokens / seconds,
            "rows": sum(batch["input_ids"].shape[0] for batch in batch_list), "token_slots_filled": tokens / slots}


def causal_layouts(sources: list[list[int]], targets: list[list[int]], eos_id: int, pad_id: int, seq_len: int,
                   micro_batch_size: int) -> dict[str, list[dict[str, Any]]]:
    """Decoder-only batches: packed rows of seq_len, one example per row padded to seq_len, or to the
    longest row of its batch."""
    import torch

    from imlsweep.data.packing import causal_examples, pack_examples

    examples = causal_examples(sources, targets, eos_id, seq_len)
    packed = pack_examples(examples, seq_len, pad_id)
    return {"packed": [{key: torch.from_numpy(value[start:start + micro_batch_size]) for key, value in packed.items()}
                       for start in range(0, len(packed["input_ids"]), micro_batch_size)],
            "padded": list(batches(padded_rows(examples, seq_len, pad_id), micro_batch_size, pad_id)),
            "padded_to_batch_max": list(batches(padded_rows(examples, None, pad_id), micro_batch_size, pad_id))}


def seq2seq_layouts(sources: list[list[int]], targets: list[list[int]], eos_id: int, pad_id: int, max_source: int,
                    max_target: int, micro_batch_size: int) -> dict[str, list[dict[str, Any]]]:
    """Encoder-decoder batches: packed pairs of rows (max_source, max_target), one example per row
    padded to those lengths, or to the longest source and target of its batch."""
    import torch

    from imlsweep.data.packing import pack_seq2seq_rows, seq2seq_examples, unpack_seq2seq_rows
    from imlsweep.data.pipeline import padded_pair_batch

    source_ids, target_ids = seq2seq_examples(sources, targets, eos_id, max_source, max_target)
    packed = unpack_seq2seq_rows(pack_seq2seq_rows(source_ids, target_ids, max_source, max_target, pad_id))
    pairs = list(zip(source_ids, target_ids))
    full = (np.zeros(max_source, np.int64), np.zeros(max_target, np.int64))  # a row that sets the padded shape

    def padded(members: list[tuple[np.ndarray, np.ndarray]], to_max: bool) -> dict[str, Any]:
        batch = padded_pair_batch(members + [full] if to_max else members, pad_id)
        return {key: value[: len(members)] for key, value in batch.items()}

    groups = [pairs[start:start + micro_batch_size] for start in range(0, len(pairs), micro_batch_size)]
    return {"packed": [{key: torch.from_numpy(value[start:start + micro_batch_size]) for key, value in packed.items()}
                       for start in range(0, len(packed["input_ids"]), micro_batch_size)],
            "padded": [padded(members, to_max=True) for members in groups],
            "padded_to_batch_max": [padded(members, to_max=False) for members in groups]}


def compare_layouts(args: argparse.Namespace, seq_len: int, count: int, use_gpu: bool) -> dict[str, Any]:
    """The same examples and model trained packed and padded; seq2seq rows are (seq_len, --target-len)."""
    import torch

    from imlsweep.data.tokenizer import load_tokenizer
    from imlsweep.train.attention import IMPLEMENTATIONS
    from imlsweep.train.model import ModelConfig, attention_path, load_model, model_config, model_kind

    config = ModelConfig(name=args.model, dropout=0.0)
    hf_config = model_config(config)
    tokenizer = load_tokenizer(config.tokenizer_name)
    sources, targets = superni_pairs(config.tokenizer_name, count, args.seed)
    path = attention_path(hf_config, use_gpu)
    if model_kind(hf_config) == "seq2seq":
        layouts = seq2seq_layouts(sources, targets, tokenizer.eos_token_id, tokenizer.pad_token_id, seq_len,
                                  args.target_len, args.micro_batch_size)
    else:
        layouts = causal_layouts(sources, targets, tokenizer.eos_token_id, tokenizer.pad_token_id, seq_len,
                                 args.micro_batch_size)
    lengths = [len(source) + len(target) for source, target in zip(sources, targets)]
    log(f"{len(lengths)} SuperNI examples, source + target tokens mean {np.mean(lengths):.0f}, max {max(lengths)}; "
        f"rows of {seq_len}; attention path {path}")
    results = {}
    for name, batch_list in layouts.items():
        torch.manual_seed(args.seed)
        engine = engine_for(load_model(config, attn_implementation=IMPLEMENTATIONS[path]), args.micro_batch_size,
                            use_gpu)
        log(f"{name}: {len(batch_list)} batches")
        results[name] = train_throughput(engine, batch_list, path)
    return {"examples": len(lengths), "seq_len": seq_len, "mean_example_tokens": float(np.mean(lengths)),
            "attention_path": path, "layouts": results,
            "packed_vs_padded": results["packed"]["target_tokens_per_s"] / results["padded"]["target_tokens_per_s"],
            "packed_vs_padded_to_batch_max": (results["packed"]["target_tokens_per_s"]
                                              / results["padded_to_batch_max"]["target_tokens_per_s"]),
            "goal_packed_vs_padded": 3.0}


def decoder_1b_mfu(args: argparse.Namespace) -> dict[str, Any]:
    """MFU of a ~1.1B decoder training on full 2048-token packed rows, bf16, one GPU."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from imlsweep.train.attention import IMPLEMENTATIONS
    from imlsweep.train.metrics import model_flops_utilization, peak_flops
    from imlsweep.train.model import attention_path

    values = dict(DECODER_1B)
    hf_config = AutoConfig.for_model(values.pop("model_type"), **values)
    path = attention_path(hf_config, use_gpu=True)
    model = AutoModelForCausalLM.from_config(hf_config, attn_implementation=IMPLEMENTATIONS[path] or "sdpa",
                                             dtype=torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    engine = engine_for(model, args.micro_batch_size, use_gpu=True)
    seq_len, rng = 2048, np.random.default_rng(args.seed)
    batch_list = []
    for _ in range(args.mfu_steps + 1):  # documents of SuperNI-like lengths filling every row
        ids = rng.integers(3, hf_config.vocab_size, size=(args.micro_batch_size, seq_len))
        document_ids = np.zeros_like(ids)
        for row in document_ids:
            bounds = np.sort(rng.choice(np.arange(1, seq_len), size=7, replace=False))
            for number, start in enumerate(bounds, start=1):
                row[start:] = number
        position_ids = np.stack([row_positions(row) for row in document_ids])
        batch_list.append({"input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(ids),
                           "position_ids": torch.from_numpy(position_ids), "document_ids": torch.from_numpy(document_ids)})
    measured = train_throughput(engine, batch_list, path)
    device = torch.cuda.get_device_name()
    peak = peak_flops(device)
    mfu = (model_flops_utilization(n_params, hf_config.num_hidden_layers, hf_config.hidden_size, seq_len,
                                   measured["tokens_per_s"], peak) if peak else None)
    return {"device": device, "parameters": n_params, "seq_len": seq_len, "attention_path": path,
            "tokens_per_s": measured["tokens_per_s"], "mfu": mfu, "goal_mfu": 0.45}


def row_positions(document_ids: np.ndarray) -> np.ndarray:
    """Positions restarting at 0 where the document id changes."""
    starts = np.flatnonzero(np.diff(document_ids, prepend=document_ids[0] - 1))
    positions = np.arange(len(document_ids))
    return positions - np.repeat(starts, np.diff(np.append(starts, len(document_ids))))


def run(args: argparse.Namespace) -> int:
    import torch

    from imlsweep.train.model import ModelConfig, model_config, model_kind

    use_gpu = torch.cuda.is_available()
    seq2seq = model_kind(model_config(ModelConfig(name=args.model))) == "seq2seq"
    seq_len = args.seq_len or (512 if args.quick else 1024 if seq2seq else 2048)
    count = args.examples or (12 if args.quick else 1024)
    result: dict[str, Any] = {"benchmark": "train", "device": torch.cuda.get_device_name() if use_gpu else "cpu",
                              "model": args.model, **compare_layouts(args, seq_len, count, use_gpu)}
    result["decoder_1b"] = decoder_1b_mfu(args) if use_gpu and not args.quick else None
    if args.json:
        print_json(result)
    else:
        print(f"attention path {result['attention_path']}: "
              f"packed {result['layouts']['packed']['target_tokens_per_s']:.0f} target tokens/s, "
              f"padded {result['layouts']['padded']['target_tokens_per_s']:.0f}: "
              f"{result['packed_vs_padded']:.2f}x (goal >= 3x); vs padding to the batch's longest row "
              f"{result['packed_vs_padded_to_batch_max']:.2f}x")
        if result["decoder_1b"]:
            print(f"1B decoder at 2048 tokens on {result['decoder_1b']['device']} "
                  f"({result['decoder_1b']['attention_path']}): MFU {result['decoder_1b']['mfu']}")
    return 0
