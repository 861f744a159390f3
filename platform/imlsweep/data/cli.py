"""`imlsweep mixture explain|preview MIXTURE.yaml --corpus DIR`: see what a mixture holds before a run."""

from __future__ import annotations

import argparse
from imlsweep.output import print_json


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="mixture_command", metavar="{explain,preview}")

    explain = commands.add_parser(
        "explain", help="per task and benchmark: rate, expected examples, whether the cap bites, share",
        description="Per task and per benchmark: the mixing rate, the expected examples in the run, whether "
                    "the EPS cap bites, and the share of the stream. Reads only the corpus manifest.")
    add_common(explain)
    explain.set_defaults(handler=run_explain)

    preview = commands.add_parser(
        "preview", help="the first N training examples exactly as the model sees them",
        description="The first N examples of the training stream, rendered with the mixture's encoding.")
    add_common(preview)
    preview.add_argument("-n", type=int, default=5, help="number of examples (default 5)")
    preview.add_argument("--tokenizer", default="tiny",
                         help="tokenizer name or folder, for the source-length rule of superni_def_pos (default tiny)")
    preview.set_defaults(handler=run_preview)


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mixture", metavar="MIXTURE.yaml", help="a YAML file holding a mixture")
    parser.add_argument("--corpus", required=True, metavar="DIR", help="a built corpus directory")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def load_plan(args: argparse.Namespace):
    from imlsweep.config import load_config
    from imlsweep.data.mixture import MixtureConfig
    from imlsweep.data.plan import plan_mixture
    from imlsweep.data.stream import open_corpus

    mixture = load_config(args.mixture, MixtureConfig)
    return mixture, plan_mixture(mixture, open_corpus(str(args.corpus)).manifest)


def run_explain(args: argparse.Namespace) -> int:
    from imlsweep.data.plan import benchmark_summary

    mixture, plan = load_plan(args)
    rows = [{"task_id": s.source_id, **{k: v for k, v in s.as_dict().items() if k != "source_id"}}
            for s in plan.sources]
    if args.json:
        print_json(rows)
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    summary = Table(title=f"{args.mixture}: {plan.total_examples} examples, eps={mixture.eps}, "
                          f"T={mixture.temperature}, seed={mixture.seed}")
    for column in ("benchmark", "tasks", "capped tasks", "share", "expected examples"):
        summary.add_column(column, justify="left" if column == "benchmark" else "right")
    for group in benchmark_summary(plan):
        summary.add_row(group["benchmark"], str(group["tasks"]), str(group["capped_tasks"]),
                        f"{group['share']:.2%}", str(group["expected_examples"]))
    console.print(summary)
    tasks = Table(title="per task")
    for column in ("task", "benchmark", "pool", "sampled", "rate", "capped", "share", "expected"):
        tasks.add_column(column, justify="left" if column in ("task", "benchmark") else "right")
    for row in rows:
        tasks.add_row(row["task_id"], row["benchmark"], str(row["pool_size"]), str(row["sampled"]),
                      f"{row['rate']:.4g}", "yes" if row["capped"] else "", f"{row['share']:.3%}",
                      str(row["expected_examples"]))
    console.print(tasks)
    return 0


def run_preview(args: argparse.Namespace) -> int:
    from imlsweep.data.stream import preview_stream
    from imlsweep.data.tokenization import PromptTokenizer
    from imlsweep.data.tokenizer import load_tokenizer
    from imlsweep.errors import UserError

    if args.n < 1:
        raise UserError(f"-n: must be at least 1, got {args.n}")
    mixture, plan = load_plan(args)
    encoder = PromptTokenizer(load_tokenizer(args.tokenizer))
    examples = preview_stream(plan, mixture, str(args.corpus), args.n, encoder)
    if args.json:
        for example in examples:
            print_json(example)
        return 0
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    for example in examples:
        console.rule(f"#{example['position']} {example['task_id']} ({example['encoding']}, loss on {example['loss']})")
        console.print("[bold]source[/bold]")
        console.print(escape(example["source"]), highlight=False)
        console.print("[bold]target[/bold]")
        console.print(escape(example["target"]), highlight=False)
    return 0
