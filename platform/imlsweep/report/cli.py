"""`imlsweep report SWEEP_DIR [--out DIR] [--seed N] [--eval NAME]`: write the HTML report and print where it is."""

from __future__ import annotations

import argparse
import sys
from imlsweep.output import print_json


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a sweep directory holding results.parquet")
    parser.add_argument("--out", metavar="DIR", default=None, help="where to write it (default SWEEP_DIR/report)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap behind every interval (default 0)")
    parser.add_argument("--eval", default="default", metavar="NAME", dest="evaluation",
                        help="which evaluation: the trials' own (default) or one `imlsweep sweep eval` added; "
                        "written to SWEEP_DIR/report-NAME unless --out")
    parser.add_argument("--json", action="store_true", help="print the paths as JSON on stdout")
    parser.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    from imlsweep.report.build import build_report

    paths = build_report(args.sweep_dir, args.out, seed=args.seed, evaluation=args.evaluation)
    if args.json:
        print_json({"html": str(paths.html), "figures": [str(p) for p in paths.figures],
                    "tables": [str(p) for p in paths.tables]})
    else:
        print(paths.summary, file=sys.stderr)
        print(f"report: {paths.html}")
        for figure in paths.figures:
            print(f"figure: {figure}", file=sys.stderr)
    return 0
