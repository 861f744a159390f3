"""`imlsweep sweep {plan,run,resume,status,eval,simulate}`.

`run` and `resume` use Ray through `imlsweep.ray_session` (the cluster named by --address or
RAY_ADDRESS, which `ray job submit` sets, else a local instance); they print the sweep directory at
the end. Storage and sweep directories are local folders or s3:// / gs:// URIs.
"""

from __future__ import annotations

import argparse
import sys

from imlsweep.output import print_json


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="sweep_command", metavar="{plan,run,resume,status,eval,simulate}")

    plan = commands.add_parser("plan", help="trials by stage and axis, resources, GPU-hours and disk estimates")
    plan.add_argument("spec", metavar="SPEC", help="a sweep spec (YAML)")
    plan.add_argument("--storage", default=None, help="override the spec's storage (a folder or an s3:// / gs:// URI)")
    plan.add_argument("--corpus", default=None, metavar="DIR",
                      help="a built corpus to check and estimate against (default: the spec's, built if needed)")
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

    evaluate = commands.add_parser(
        "eval", help="score the kept models of a finished sweep with other eval settings, without training; "
        "rows join results.parquet under the evaluation's name")
    evaluate.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a sweep directory or URI (holds sweep.yaml)")
    evaluate.add_argument("eval_file", metavar="EVAL.yaml",
                          help="eval keys (tasks, shots, mode, max_new_tokens, ...) replacing each trial's own")
    evaluate.add_argument("--name", default=None, help="the evaluation's name (default: the file's stem)")
    evaluate.add_argument("--address", default=None,
                          help="Ray cluster address (default: RAY_ADDRESS, else a new local instance)")
    evaluate.add_argument("--json", action="store_true", help="print each trial's scores as JSON on stdout")
    evaluate.set_defaults(handler=eval_command)

    simulate = commands.add_parser(
        "simulate", help="the real driver and Tune scheduling on a simulated many-node cluster: makespan, GPU "
        "utilisation, critical path, driver overhead (each trial holds its resources for its estimated time)")
    simulate.add_argument("specs", metavar="SPEC", nargs="+", help="sweep specs (YAML); one simulation each")
    simulate.add_argument("--nodes", type=int, required=True, help="simulated GPU nodes")
    simulate.add_argument("--gpus-per-node", type=int, required=True)
    simulate.add_argument("--cpus-per-node", type=int, default=None,
                          help="default: enough for every GPU's worker (gpus x the spec's cpus_per_worker)")
    simulate.add_argument("--time-scale", type=float, default=None,
                          help="seconds here per simulated second (default: the lower bound takes ~5 minutes)")
    simulate.add_argument("--json", action="store_true",
                          help="print one JSON object per spec (a list for several) on stdout")
    simulate.set_defaults(handler=simulate_command)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (default: RAY_ADDRESS, else a new local instance)")
    parser.add_argument("--report", action="store_true", help="build the HTML report when the sweep ends")
    parser.add_argument("--json", action="store_true", help="print the final status as JSON on stdout")


def plan_command(args: argparse.Namespace) -> int:
    """Checks every trial (fails on a name that does not exist), then prints the plan, with what is not
    on this machine listed, and fails when a trial does not fit the memory `resources` declares; without a built corpus, `corpus_missing` says why and the spec's figures stand in."""
    from imlsweep.config import ConfigError
    from imlsweep.sweep.checks import check_sweep, memory_problems, open_built_corpus, require_no_wrong_names
    from imlsweep.sweep.estimate import Estimator
    from imlsweep.sweep.plan import format_plan, plan_summary
    from imlsweep.sweep.sweep import open_spec

    sweep = open_spec(args.spec, args.storage)
    corpus, corpus_missing = open_built_corpus(sweep, args.corpus)
    problems = check_sweep(sweep, corpus)
    require_no_wrong_names(sweep, problems)
    summary = plan_summary(sweep, estimator=Estimator(sweep.spec, corpus))
    summary["corpus_missing"] = corpus_missing
    summary["absent_here"] = [problem.line(sweep.source) for problem in problems]
    if args.json:
        print_json(summary)
    else:
        print(format_plan(summary))
        if corpus_missing:
            print(f"corpus not checked (cannot be built here): {corpus_missing}")
        for line in summary["absent_here"]:
            print(f"not on this machine (a run here fails): {line}")
    too_big = memory_problems(sweep, summary["memory"])
    if too_big:
        raise ConfigError("\n".join(too_big))
    return 0


def run_command(args: argparse.Namespace) -> int:
    from imlsweep.sweep.sweep import open_spec

    return execute(open_spec(args.spec, args.storage), args)


def resume_command(args: argparse.Namespace) -> int:
    from imlsweep.sweep.sweep import open_sweep_dir

    return execute(open_sweep_dir(args.sweep_dir), args)


def execute(sweep, args: argparse.Namespace) -> int:
    from imlsweep.corpus.store import Corpus
    from imlsweep.ray_session import ray_session
    from imlsweep.sweep.checks import require_fits, require_valid, require_writable_token_caches
    from imlsweep.sweep.corpus import ensure_corpus
    from imlsweep.sweep.credentials import describe_tracking
    from imlsweep.sweep.driver import run_sweep
    from imlsweep.sweep.state import format_status

    require_valid(sweep, Corpus.open(ensure_corpus(sweep.spec)))  # nothing starts on bad input
    require_fits(sweep)  # nor on a trial too big for its GPUs or hosts
    print(describe_tracking(sweep.spec.tracking), file=sys.stderr, flush=True)  # where the key comes from, never the key
    require_writable_token_caches(sweep)
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


def eval_command(args: argparse.Namespace) -> int:
    from imlsweep.ray_session import ray_session
    from imlsweep.sweep.reevaluate import format_evaluation, prepare, run_evaluation

    evaluation = prepare(args.sweep_dir, args.eval_file, args.name)  # nothing starts on bad input
    with ray_session(args.address):
        scores = run_evaluation(evaluation)
    print(format_evaluation(evaluation, scores), file=sys.stderr)
    if args.json:
        print_json({"eval": evaluation.name, "sweep_dir": evaluation.sweep.uri, "trials": scores,
                    "without_model": evaluation.without_model})
    else:
        print(evaluation.sweep.uri)
    return 0


def simulate_command(args: argparse.Namespace) -> int:
    from imlsweep.sweep.checks import check_sweep, open_built_corpus, require_no_wrong_names
    from imlsweep.sweep.estimate import Estimator
    from imlsweep.sweep.simulate import format_simulation, simulate, simulated_cluster
    from imlsweep.sweep.sweep import open_spec

    sweeps = [open_spec(path) for path in args.specs]  # every spec is validated before any cluster starts
    estimators = []
    for sweep in sweeps:  # estimates from the built corpus where it can be had here (as `sweep plan`)
        corpus, _ = open_built_corpus(sweep)
        require_no_wrong_names(sweep, check_sweep(sweep, corpus))
        estimators.append(Estimator(sweep.spec, corpus))
    cpus_per_node = args.cpus_per_node or max(node_cpus(sweep.spec, args.gpus_per_node) for sweep in sweeps)
    results = []
    with simulated_cluster(args.nodes, args.gpus_per_node, cpus_per_node):
        for sweep, estimator in zip(sweeps, estimators):
            figures = simulate(sweep, estimator, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                               cpus_per_node=cpus_per_node, time_scale=args.time_scale)
            print(format_simulation(figures), file=sys.stderr)
            results.append(figures)
    if args.json:
        print_json(results[0] if len(results) == 1 else results)
    return 0 if all(figures["trials_ran"] == figures["trials"] for figures in results) else 1


def node_cpus(spec, gpus_per_node: int) -> int:
    """CPUs a simulated node declares: a worker's CPUs for each of its GPUs, plus one for the trial's data;
    on a CPU-only spec, one trial's workers plus one."""
    import math

    resources = spec.resources
    if resources.gpus_per_worker:
        return math.ceil(gpus_per_node / resources.gpus_per_worker * resources.cpus_per_worker) + 1
    return math.ceil(resources.workers * resources.cpus_per_worker) + 1
