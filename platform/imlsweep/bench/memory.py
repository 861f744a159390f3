"""`imlsweep bench memory`: the memory planner against measured peaks of real trials.

Each run is a real trial (`run_trial`: Ray Train, 2 DeepSpeed workers on CPU, fp32) of a Llama-layout
model built from a config (~10M, ~100M or ~270M parameters, weights written to a Hugging Face folder
and loaded the way a trial loads any model), trained for a few steps on packed rows of random tokens.
For each (model, ZeRO stage) it prints the plan's host memory per worker (`imlsweep.train.memory`) next
to the measured peak resident memory of the fullest worker (the trial's `peak_host_memory_gb`) and
their ratio; and, at ZeRO 2, the peak with and without `train.activation_checkpointing`, planned and
measured. `runtime_gb` is the peak of the smallest model's trial less what the plan counts for its
model: what the plan's per-process constant stands for.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from imlsweep.output import print_json

# Llama layout, untied 32k vocabulary above 10M; parameter counts in the keys' names
MODELS = {
    "10m": {"hidden_size": 320, "intermediate_size": 864, "num_hidden_layers": 4, "num_attention_heads": 5,
            "vocab_size": 16000, "tie_word_embeddings": True},
    "100m": {"hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 8, "num_attention_heads": 12,
             "vocab_size": 32000, "tie_word_embeddings": False},
    "270m": {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 16, "num_attention_heads": 16,
             "vocab_size": 32000, "tie_word_embeddings": False},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="10m,100m", help=f"comma-separated, of {', '.join(MODELS)} (default 10m,100m)")
    parser.add_argument("--zero-stages", default="0,2,3", help="comma-separated ZeRO stages (default 0,2,3)")
    parser.add_argument("--checkpointing-model", default="100m",
                        help="the model run at ZeRO 2 with and without activation checkpointing (default 100m; "
                        "'none' skips it)")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--micro-batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per trial")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--address", default=None, help="Ray cluster (default: a new local instance)")


def log(message: str) -> None:
    print(f"[bench memory] {message}", file=sys.stderr, flush=True)


def write_model(name: str, folder: Path, seed: int) -> Path:
    """A Hugging Face folder (config.json and seeded weights) of one of MODELS."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = folder / f"llama-{name}"
    config = AutoConfig.for_model("llama", max_position_embeddings=4096, bos_token_id=0, eos_token_id=1,
                                  pad_token_id=2, **MODELS[name])
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    return path


def packed_rows(rows: int, seq_len: int, vocab: int, seed: int) -> Any:
    """A Ray Dataset in the data -> train contract: rows of two documents of random tokens, the second
    half of each document trained on."""
    import ray.data

    rng = np.random.default_rng(seed)
    first = seq_len // 3
    return ray.data.from_items([
        {"input_ids": rng.integers(3, vocab, seq_len, dtype=np.int32),
         "document_lengths": np.array([first, seq_len - first], dtype=np.int64),
         "loss_starts": np.array([first // 2, (seq_len - first) // 2], dtype=np.int64)}
        for _ in range(rows)])


def trial_config(name: str, model_dir: Path, corpus: Path, zero_stage: int, checkpointing: bool,
                 args: argparse.Namespace) -> Any:
    from imlsweep.train.config import TrialConfig

    return TrialConfig.model_validate({
        "name": name, "corpus": str(corpus), "model": {"name": str(model_dir), "tokenizer": "tiny"},
        "mixture": {"max_length": args.seq_len},
        "train": {"workers": 2, "cpus_per_worker": 1, "zero_stage": zero_stage, "precision": "fp32",
                  "micro_batch_size": args.micro_batch_size, "max_steps": args.steps, "warmup_steps": 0,
                  "log_every": args.steps, "keep": "none", "activation_checkpointing": checkpointing,
                  "seed": args.seed}})


def planned(config: Any) -> Any:
    from imlsweep.train.memory import plan_memory, planned_model, trial_shape

    shape = planned_model(config.model)
    return shape, plan_memory(shape, trial_shape(config, shape, gpus_per_node=1))


def measure(config: Any, storage: Path, dataset: Any) -> dict[str, Any]:
    from imlsweep.train.trial import run_trial
    from imlsweep.trial_dir import TrialDir

    shape, plan = planned(config)
    log(f"{config.name}: {shape.params / 1e6:.0f}M parameters, planned {plan.host_gb_per_worker:.2f} GiB per worker")
    trial = run_trial(config, str(storage), dataset=dataset)
    measured = TrialDir(trial.trial_dir).read_metrics_log()[-1]["peak_host_memory_gb"]  # rank 0's metrics.jsonl
    log(f"{config.name}: measured {measured:.2f} GiB")
    return {"params": shape.params, "zero_stage": config.train.zero_stage,
            "activation_checkpointing": config.train.activation_checkpointing,
            "planned_gb": round(plan.host_gb_per_worker, 3), "measured_gb": round(measured, 3),
            "planned_over_measured": round(plan.host_gb_per_worker / measured, 3),
            "planned_model_states_gb": round(plan.model_states_gb, 3),
            "planned_activations_gb": round(plan.activations_gb, 3)}


def run(args: argparse.Namespace) -> int:
    from imlsweep.ray_session import ray_session
    from imlsweep.train.memory import HOST_RUNTIME_GB

    models = [name.strip() for name in args.models.split(",")]
    stages = [int(stage) for stage in args.zero_stages.split(",")]
    checkpointing_model = None if args.checkpointing_model == "none" else args.checkpointing_model
    unknown = sorted(set(models + [checkpointing_model or models[0]]) - set(MODELS))
    if unknown:
        raise SystemExit(f"bench memory: unknown model {unknown[0]!r}; one of {', '.join(MODELS)}")
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as scratch, ray_session(args.address):
        scratch_dir = Path(scratch)
        corpus = scratch_dir / "corpus"  # no corpus is read: the rows are given; the token cache goes beside it
        corpus.mkdir()
        dataset = packed_rows(2 * args.micro_batch_size * args.steps, args.seq_len, 2048, args.seed).materialize()
        for name in dict.fromkeys(models + ([checkpointing_model] if checkpointing_model else [])):
            model_dir = write_model(name, scratch_dir, args.seed)
            plans = [(stage, False) for stage in stages if name in models]
            if name == checkpointing_model:
                plans += [(2, False), (2, True)]
            for stage, checkpointing in dict.fromkeys(plans):
                label = f"{name}-zero{stage}" + ("-checkpointed" if checkpointing else "")
                runs[label] = measure(trial_config(label, model_dir, corpus, stage, checkpointing, args),
                                      scratch_dir / "runs", dataset)
    ratios = [figures["planned_over_measured"] for figures in runs.values()]
    smallest = min(runs.values(), key=lambda figures: figures["params"])
    summary: dict[str, Any] = {
        "setup": {"workers": 2, "device": "cpu", "precision": "fp32", "seq_len": args.seq_len,
                  "micro_batch_size": args.micro_batch_size, "steps": args.steps},
        "runs": runs,
        "planned_over_measured": {"min": min(ratios), "max": max(ratios)},
        "runtime_gb": {"measured": round(smallest["measured_gb"] - (smallest["planned_gb"] - HOST_RUNTIME_GB), 3),
                       "planned": HOST_RUNTIME_GB},
    }
    if checkpointing_model:
        plain, checkpointed = runs[f"{checkpointing_model}-zero2"], runs[f"{checkpointing_model}-zero2-checkpointed"]
        summary["activation_checkpointing"] = {
            "model": checkpointing_model, "zero_stage": 2,
            "measured_gb": {"without": plain["measured_gb"], "with": checkpointed["measured_gb"]},
            "planned_gb": {"without": plain["planned_gb"], "with": checkpointed["planned_gb"]},
            "measured_saving_gb": round(plain["measured_gb"] - checkpointed["measured_gb"], 3),
            "planned_saving_gb": round(plain["planned_gb"] - checkpointed["planned_gb"], 3)}
    if args.json:
        print_json(summary)
    else:
        for label, figures in runs.items():
            print(f"{label}: planned {figures['planned_gb']:.2f} GiB, measured {figures['measured_gb']:.2f} GiB "
                  f"per worker (planned/measured {figures['planned_over_measured']:.2f})")
        if checkpointing_model:
            saving = summary["activation_checkpointing"]
            print(f"activation checkpointing ({checkpointing_model}, ZeRO 2) saves {saving['measured_saving_gb']:.2f} "
                  f"GiB measured, {saving['planned_saving_gb']:.2f} GiB planned")
    return 0
