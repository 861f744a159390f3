"""The `imlsweep` command.

Each stage of the data flow owns its subcommand group in its own `cli.py` (corpus, mixture, train,
eval, sweep, report, bench); this file only wires them together. Group modules import their heavy
dependencies (Ray, torch) inside the handlers, so `imlsweep --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from imlsweep.errors import UserError
from imlsweep.output import json_stdout

# (group name, module that defines `register(subparsers)`, one-line help)
COMMAND_GROUPS = [
    ("corpus", "imlsweep.corpus.cli", "build, inspect and check the consolidated task corpus"),
    ("mixture", "imlsweep.data.cli", "explain and preview a training mixture; its token cache"),
    ("train", "imlsweep.train.cli", "run one trial: Ray Train + DeepSpeed"),
    ("eval", "imlsweep.eval.cli", "evaluate a checkpoint; score predictions like the SuperNI scorer"),
    ("sweep", "imlsweep.sweep.cli", "plan, run, resume and inspect sweeps with Ray Tune"),
    ("report", "imlsweep.report.cli", "turn a sweep's results into an HTML report with plots"),
    ("bench", "imlsweep.bench.cli", "measure throughput against side-by-side baselines"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imlsweep",
        description="Instruction-tuning sweeps on Ray: corpus -> mixture -> train -> eval -> sweep -> report.",
    )
    groups = parser.add_subparsers(dest="group", metavar="{" + ",".join(g for g, _, _ in COMMAND_GROUPS) + "}")
    for name, module_name, help_text in COMMAND_GROUPS:
        module = importlib.import_module(module_name)
        module.register(groups.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0 if args.group is None else 2
    try:
        with json_stdout() if getattr(args, "json", False) else contextlib.nullcontext():
            return int(handler(args) or 0)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
