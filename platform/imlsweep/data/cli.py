"""`imlsweep mixture explain|preview MIXTURE.yaml --corpus DIR`: see what a mixture holds before a run;
`imlsweep mixture cache list|prune CACHE`: the token cache trials share."""

from __future__ import annotations

import argparse
from imlsweep.output import print_json


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="mixture_command", metavar="{explain,preview,cache}")

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

    register_cache(commands.add_parser("cache", help="list and prune the token cache trials share",
                                       description="The token cache: a task's examples rendered and tokenized "
                                                   "once, shared by trials and sweeps."))


def register_cache(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="cache_command", metavar="{list,prune}")
    listing = commands.add_parser("list", help="every entry: task, examples, size, when written",
                                  description="Every entry of a token cache: its task, examples, size and when "
                                              "it was written; damaged entries are marked.")
    add_cache_location(listing)
    listing.set_defaults(handler=run_cache_list)

    prune = commands.add_parser(
        "prune", help="remove damaged entries, killed writers' files, and old entries",
        description="Remove damaged entries and files killed writers left; with --older-than-days, entries not "
                    "written for that long; with --max-mb, the least recently written until the rest fit.")
    add_cache_location(prune)
    prune.add_argument("--older-than-days", type=float, default=None, metavar="D")
    prune.add_argument("--max-mb", type=float, default=None, metavar="MB")
    prune.set_defaults(handler=run_cache_prune)


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


def add_cache_location(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("location", metavar="CACHE", help="a token cache: a folder (e.g. <corpus>.token-cache) "
                                                          "or an s3:// / gs:// URI")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def run_cache_list(args: argparse.Namespace) -> int:
    from imlsweep.data.token_cache import entry_summary, list_entries

    entries = [entry_summary(entry) for entry in list_entries(args.location)[0]]
    if args.json:
        print_json(entries)
        return 0
    for entry in entries:
        state = "damaged" if entry.get("damaged") else f"{entry['task_id']}  {entry['examples']} examples"
        print(f"{entry['key']}  {entry['bytes'] / 1e6:8.3f} MB  {state}")
    print(f"{len(entries)} entries, {sum(e['bytes'] for e in entries) / 1e6:.3f} MB")
    return 0


def run_cache_prune(args: argparse.Namespace) -> int:
    from imlsweep.data.token_cache import prune
    from imlsweep.errors import UserError

    for flag, value in (("--older-than-days", args.older_than_days), ("--max-mb", args.max_mb)):
        if value is not None and value < 0:
            raise UserError(f"{flag}: must not be negative, got {value}")
    result = prune(args.location, max_bytes=None if args.max_mb is None else int(args.max_mb * 1e6),
                   older_than_s=None if args.older_than_days is None else args.older_than_days * 86400)
    if args.json:
        print_json(result)
    else:
        print(f"{args.location}: removed {result['removed']}, kept {result['kept']} entries "
              f"({result['bytes'] / 1e6:.3f} MB)")
    return 0
