"""`imlsweep corpus {build,stats,leakage}`."""

from __future__ import annotations

import argparse
import json
import sys
from imlsweep.output import print_json

STAT_HEADERS = ["categories", "tasks", "examples", "prompts/task", "len mean", "len std"]


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="corpus_command", metavar="{build,stats,leakage}")
    parser.set_defaults(handler=lambda _args: parser.print_help() or 0)

    build = commands.add_parser("build", help="build a corpus from a corpus config",
                                description="Read every source of CONFIG into one row schema and write the corpus "
                                "(per-task Parquet, manifest.parquet, stats.json) to DIR.")
    build.add_argument("config", help="corpus config YAML (e.g. sweeps/corpora/superni_sample.yaml)")
    build.add_argument("--out", required=True, help="output folder; must not exist unless --overwrite")
    build.add_argument("--skip-invalid", action="store_true",
                       help="build the valid tasks and list rejected ones in DIR/invalid.jsonl")
    build.add_argument("--overwrite", action="store_true", help="replace an existing corpus at --out")
    build.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    build.set_defaults(handler=run_build)

    stats = commands.add_parser("stats", help="OPT-IML Table 1 statistics of a built corpus")
    stats.add_argument("dir", help="a built corpus folder")
    stats.add_argument("--json", action="store_true", help="print JSON on stdout")
    stats.add_argument("--tokenizer", help="count prompt length in this tokenizer's tokens (`tiny`, a folder or "
                       "a hub id) instead of whitespace words")
    stats.set_defaults(handler=run_stats)

    leakage = commands.add_parser(
        "leakage", help="13-gram overlap between training and eval tasks (Ray Data)",
        description="For every (training task, eval task) pair, the fraction of eval examples sharing a 13-gram "
        "with the training task. Pairs above the threshold and pairs sharing a data source are listed. To remove "
        "a confirmed task, add its id to the text file named by the corpus config's `removals` key and build again.")
    leakage.add_argument("dir", help="a built corpus folder")
    leakage.add_argument("--threshold", type=float, default=0.01, help="flag pairs above this fraction (0.01)")
    leakage.add_argument("--ngram", type=int, default=13, help="n-gram length in words (13)")
    leakage.add_argument("--out", help="write the report as JSON to this file")
    leakage.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    leakage.set_defaults(handler=run_leakage)


def run_build(args: argparse.Namespace) -> int:
    from imlsweep.corpus.build import build_corpus
    from imlsweep.corpus.config import load_corpus_config
    from imlsweep.corpus.store import STATS_FILE

    config = load_corpus_config(args.config)
    corpus = build_corpus(config, args.out, skip_invalid=args.skip_invalid, overwrite=args.overwrite,
                          progress=True)
    build_info = json.loads((corpus.dir / STATS_FILE).read_text(encoding="utf-8"))["build"]
    summary = {
        "out": str(corpus.dir),
        "tasks": len(corpus.manifest),
        "examples": int(corpus.manifest["n_examples"].sum()),
        "tasks_by_split": corpus.manifest["split"].value_counts().sort_index().to_dict(),
        "invalid": build_info["invalid"],
        "left_out": {reason: len(task_ids) for reason, task_ids in build_info["left_out"].items()},
    }
    if args.json:
        print_json(summary)
    else:
        print(f"built {summary['tasks']} tasks, {summary['examples']} examples -> {summary['out']}", file=sys.stderr)
        for reason, count in summary["left_out"].items():
            print(f"  left out {count} task(s): {reason}", file=sys.stderr)
        if summary["invalid"]:
            print(f"  rejected {summary['invalid']} invalid task(s): see invalid.jsonl", file=sys.stderr)
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from imlsweep.corpus.stats import STAT_COLUMNS, corpus_stats
    from imlsweep.corpus.store import Corpus

    stats = corpus_stats(Corpus.open(args.dir), tokenizer=args.tokenizer)
    if args.json:
        print_json(stats)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"corpus statistics (prompt length in {stats['unit']})")
    table.add_column("group")
    for header in STAT_HEADERS:
        table.add_column(header, justify="right")
    for name, row in [*stats["benchmarks"].items(), *stats["splits"].items()]:
        table.add_row(name, *(str(row[column]) for column in STAT_COLUMNS))
    Console().print(table)
    return 0


def run_leakage(args: argparse.Namespace) -> int:
    from imlsweep.corpus.leakage import find_leakage
    from imlsweep.corpus.store import Corpus
    from imlsweep.ray_session import ray_session

    corpus = Corpus.open(args.dir)
    with ray_session():
        report = find_leakage(corpus, threshold=args.threshold, n=args.ngram).as_dict()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=2)
    if args.json:
        print_json(report)
        return 0
    print(f"checked {report['pairs_checked']} (training task, eval task) pairs; "
          f"{len(report['flagged'])} above {report['threshold']:.2%}", file=sys.stderr)
    for pair in report["flagged"]:
        print(f"  {pair['fraction']:.1%}  {pair['train_task']} -> {pair['eval_task']} "
              f"({pair['overlapping_examples']}/{pair['eval_examples']} eval examples)", file=sys.stderr)
    for pair in report["shared_data_source"]:
        print(f"  shared data source {pair['data_source']!r}: {pair['train_task']} / {pair['eval_task']}",
              file=sys.stderr)
    return 0
