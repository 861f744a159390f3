"""`imlsweep sweep {plan,run,resume,status}`.

`run` and `resume` use Ray through `imlsweep.ray_session` (the cluster named by --address or
RAY_ADDRESS, which `ray job submit` sets, else a local instance); they print the sweep directory at
the end. Storage and sweep directories are local folders or s3:// / gs:// URIs.
"""

from __future__ import annotations

import argparse
import sys

from imlsweep.output import print_json


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="sweep_command", metavar="{plan,run,resume,status}")

    plan = commands.add_parser("plan", help="trials by stage and axis, resources, GPU-hours and disk estimates")
    plan.add_argument("spec", metavar="SPEC", help="a sweep spec (YAML)")
    plan.add_argument("--storage", default=None, help="override the spec's storage (a folder or an s3:// / gs:// URI)")
    plan.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    plan.set_defaults(handler=plan_command)

    run = commands.add_parser("run", help="run a sweep with Ray Tune")
    run.add_argument("spec", metavar="SPEC", help="a sweep spec (YAML)")
    run.add_argument("--storage", default=None, help="override the spec's storage (a folder or an s3:// / gs:// URI)")
    add_run_options(run)
    run.set_defaults(handler=run_command)

    resume = commands.add_parser("resume", help="continue a sweep: finished trials are not run again")
    resume.add_argument("sweep_dir", metavar="DIR", help="a sweep directory or URI (holds sweep.yaml)")
    add_run_options(resume)
    resume.set_defaults(handler=resume_command)

    status = commands.add_parser("status", help="counts by state and the failing trials with their errors")
    status.add_argument("sweep_dir", metavar="DIR", help="a sweep directory or URI (holds sweep.yaml)")
    status.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    status.set_defaults(handler=status_command)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (default: RAY_ADDRESS, else a new local instance)")
    parser.add_argument("--report", action="store_true", help="build the HTML report when the sweep ends")
    parser.add_argument("--json", action="store_true", help="print the final status as JSON on stdout")


def plan_command(args: argparse.Namespace) -> int:
    from imlsweep.sweep.plan import format_plan, plan_summary
    from imlsweep.sweep.sweep import open_spec

    summary = plan_summary(open_spec(args.spec, args.storage))
    if args.json:
        print_json(summary)
    else:
        print(format_plan(summary))
    return 0


def run_command(args: argparse.Namespace) -> int:
    from imlsweep.sweep.sweep import open_spec

    return execute(open_spec(args.spec, args.storage), args)


def resume_command(args: argparse.Namespace) -> int:
    from imlsweep.sweep.sweep import open_sweep_dir

    return execute(open_sweep_dir(args.sweep_dir), args)


def execute(sweep, args: argparse.Namespace) -> int:
    from imlsweep.ray_session import ray_session
    from imlsweep.sweep.driver import run_sweep
    from imlsweep.sweep.state import format_status

    with ray_session(args.address):
        status = run_sweep(sweep)
    # printed after Ray has shut down, so Ray's last messages do not follow the result
    print(format_status(status), file=sys.stderr)
    if args.report:
        from imlsweep.report.build import build_report

        paths = build_report(sweep.uri, None)
        print(f"{paths.summary}\nreport: {paths.html}", file=sys.stderr)
    if args.json:
        print_json(status)
    else:
        print(sweep.uri)
    done = status["counts"]["completed"] + status["counts"]["stopped"]  # stopped early is done, on purpose
    return 0 if done == status["total_trials"] else 1


def status_command(args: argparse.Namespace) -> int:
    from imlsweep.sweep.state import format_status, sweep_status
    from imlsweep.sweep.sweep import open_sweep_dir

    status = sweep_status(open_sweep_dir(args.sweep_dir))
    if args.json:
        print_json(status)
    else:
        print(format_status(status))
    return 0
