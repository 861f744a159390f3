"""`imlsweep bench {data,train,eval,sweep,corpus,merge,memory}`: each prints figures (JSON with --json) as
ratios against a baseline measured in the same run. Each stage's benchmark lives in
`imlsweep.bench.<stage>` and exposes `add_arguments(parser)` and `run(args) -> int`."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = [
    ("data", "full data pipeline vs bare tokenizer vs a Hugging Face datasets baseline"),
    ("train", "target tokens/s packed vs padded; MFU on GPU"),
    ("eval", "rank classification vs lm-evaluation-harness; batched vs one-by-one generation"),
    ("sweep", "a grid of tiny trials run by the platform vs a TorchTrainer per Tune trial"),
    ("corpus", "corpus build and leakage on a synthetic SuperNI checkout of the real size: MB/s, peak RSS"),
    ("merge", "merging streamed tensor by tensor from safetensors vs with every model loaded"),
    ("memory", "the memory planner's peak per worker vs measured peaks of real 2-worker trials (ZeRO 0, 2, 3; "
               "activation checkpointing on and off)"),
]


def register(parser: argparse.ArgumentParser) -> None:
    benches = parser.add_subparsers(dest="bench", metavar="{" + ",".join(name for name, _ in BENCHMARKS) + "}")
    for name, help_text in BENCHMARKS:
        module = importlib.import_module(f"imlsweep.bench.{name}")
        sub = benches.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
