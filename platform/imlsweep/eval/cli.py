"""`imlsweep eval score` (the official SuperNI scorer's files) and `imlsweep eval run` (a checkpoint
on an eval suite, with Ray Data batch inference)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from imlsweep.output import print_json


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="eval_command", metavar="{score,run}")

    score = commands.add_parser("score", help="score SuperNI-format predictions against references",
                                description="Score predictions JSONL ({id, prediction}) against references JSONL "
                                "({id, references, task_id?, task_category?, track?}) exactly as the official "
                                "Super-NaturalInstructions scorer does.")
    score.add_argument("--predictions", required=True, type=Path, help="predictions JSONL")
    score.add_argument("--references", required=True, type=Path, help="references JSONL")
    score.add_argument("--xlingual-tokenizer", default="gpt2",
                       help="GPT-2 tokenizer (hub id or local folder) for the xlingual track")
    score.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    score.set_defaults(handler=score_command)

    run = commands.add_parser("run", help="evaluate a checkpoint on an eval suite (Ray Data, one replica per GPU)",
                              description="Evaluate a model on a corpus's eval tasks and write predictions.parquet "
                              "and metrics.json into --out.")
    run.add_argument("config", type=Path, help="YAML: model, corpus, eval, replicas, use_gpu")
    run.add_argument("--out", required=True, help="output directory (or storage URI)")
    run.add_argument("--json", action="store_true", help="print the metrics as JSON on stdout")
    run.set_defaults(handler=run_command)


def score_command(args: argparse.Namespace) -> int:
    from imlsweep.eval.scorer import score_files

    result = score_files(args.predictions, args.references, args.xlingual_tokenizer)
    if args.json:
        print_json(result)
    else:
        print_score(result)
    return 0


def print_score(result: dict[str, Any]) -> None:
    missing = result["missing_predictions"]
    if missing:
        print(f"No prediction for {len(missing)} instances; scored as empty strings.", file=sys.stderr)
    for track, metrics in result["tracks"].items():
        print(f"======== {track} track: {metrics['n']} instances ========")
        print(f"exact_match: {metrics['exact_match']}\nrougeL: {metrics['rougeL']}")
        for grouping in ("per_category", "per_task"):
            if grouping in metrics:
                print(f"======== {grouping.replace('_', ' ')} ========")
                for group, values in metrics[grouping].items():
                    print(f"{group}: exact_match {values['exact_match']}  rougeL {values['rougeL']}  (n={values['n']})")


def run_command(args: argparse.Namespace) -> int:
    from imlsweep.eval.run import load_eval_run_config, run_eval
    from imlsweep.ray_session import ray_session

    config = load_eval_run_config(args.config)
    with ray_session():
        metrics = run_eval(config, args.out)
    if args.json:
        print_json(metrics)
    else:
        overall = metrics["overall"]
        print(f"{overall['n_eval']} items in {overall['n_tasks']} tasks: rougeL {overall['rougeL']:.2f}  "
              f"exact_match {overall['exact_match']:.2f}  combined {metrics['combined']:.2f}", file=sys.stderr)
        print(f"wrote {args.out}/predictions.parquet and metrics.json", file=sys.stderr)
    return 0
