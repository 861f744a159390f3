"""`imlsweep train CONFIG.yaml [--storage DIR]`: run one trial (the same code sweeps run)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from imlsweep.output import print_json

DEFAULT_STORAGE = "runs"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="trial YAML: name, corpus, model, mixture, train, eval, init_from")
    parser.add_argument("--storage", default=DEFAULT_STORAGE,
                        help=f"where the trial directory goes: a local folder, s3:// or gs:// (default {DEFAULT_STORAGE})")
    parser.add_argument("--json", action="store_true", help="print the trial result as JSON on stdout")
    parser.set_defaults(handler=train_command)


def train_command(args: argparse.Namespace) -> int:
    from imlsweep.train.config import load_trial_config
    from imlsweep.train.trial import check_trial

    config = load_trial_config(args.config)
    check_trial(config)  # bad model, tokenizer or init_from: an error before Ray starts

    from imlsweep.ray_session import ray_session
    from imlsweep.train.trial import run_trial

    with ray_session():
        result = run_trial(config, args.storage)
    if args.json:
        print_json(asdict(result))
    else:
        print(f"trial {result.name}: step {result.metrics.get('step')}, loss {result.metrics.get('loss', float('nan')):.4f}, "
              f"{result.train_examples} examples in {result.train_time_s:.1f}s -> {result.trial_dir}", file=sys.stderr)
    return 0
