"""Running a sweep on Ray Tune: one Tuner per stage, in order, each trial the function trainable of
`imlsweep.sweep.trainable`. Single-worker trials run in the trainable's own process, and Tune reuses that
process for the next trial, so short trials pay no per-trial process start. Tune's own experiment state
stays in the sweep's folder on this machine.

The sweep directory, not Tune's experiment state, says what is done: a trial with
`trial_result.json` is never run again, so `run` and `resume` are the same loop over what is left.
A trial cut off by a dead driver reruns under its own name, and Ray Train finds its checkpoints in
its trial directory and resumes from them; a trial that failed runs again with fresh retries.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any, Callable

from imlsweep.sweep.corpus import ensure_corpus
from imlsweep.sweep.plan import max_concurrent_trials, plan_summary
from imlsweep.sweep.results import write_results_table
from imlsweep.sweep.spec import Search, Stage
from imlsweep.sweep.state import (all_trials, clear_driver_file, is_completed, stage_names, sweep_status, trial_files,
                                  write_driver_file)
from imlsweep.sweep.sweep import Sweep
from imlsweep.sweep.trainable import StageContext, TrialRunner, runs_in_process, trainable, trainable_resources

TUNE_DIR = ".tune"  # Tune's own experiment state, one experiment per stage, in the sweep's local folder


def search_trial_namer(stage: str, first: int) -> Callable[[Any], str]:
    """`<stage>-s0000`, `-s0001`, ... in the order Tune creates the trials (ids may be random)."""
    names: dict[str, str] = {}

    def name(trial: Any) -> str:
        return names.setdefault(trial.trial_id, f"{stage}-s{first + len(names):04d}")

    return name


def search_space(search: Search) -> dict[str, Any]:
    from ray import tune

    space = {}
    for key, dist in search.space.items():
        if dist.kind == "choice":
            space[key] = tune.choice(dist.values)
        elif dist.kind == "randint":
            space[key] = tune.randint(int(dist.low), int(dist.high))
        else:
            space[key] = getattr(tune, dist.kind)(dist.low, dist.high)
    return space


def search_settings(search: Search, done: int, concurrency: int) -> dict[str, Any]:
    """TuneConfig keys of a search stage; `done` samples already finished (a resume draws the rest)."""
    from ray.tune.search import BasicVariantGenerator

    if search.algorithm == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        algorithm = OptunaSearch(metric=search.metric, mode=search.mode, seed=search.seed + done)
    else:
        algorithm = BasicVariantGenerator(random_state=search.seed + done, max_concurrent=concurrency)
    settings = {"search_alg": algorithm, "num_samples": search.num_samples - done}
    if search.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        settings["scheduler"] = ASHAScheduler(metric=search.metric, mode=search.mode)
    return settings


def log(message: str) -> None:
    print(f"[sweep] {message}", file=sys.stderr, flush=True)


def progress_callback(sweep: Sweep, stage: str, total: int):
    from ray import tune

    class Progress(tune.Callback):
        """Per-trial progress lines, and results.parquet rewritten as each trial ends."""

        def __init__(self) -> None:
            self.started: dict[str, float] = {}
            self.finished_rows: dict[str, list[dict[str, Any]]] = {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.started[str(trial)] = time.time()
            log(f"{stage}: start {trial}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.finish(trial, "done")

        def on_trial_error(self, iteration, trials, trial, **info):
            self.finish(trial, "FAILED")

        def finish(self, trial, outcome: str) -> None:
            seconds = time.time() - self.started.get(str(trial), time.time())
            files = trial_files(sweep.uri)  # one listing for the table and the count
            write_results_table(sweep.spec.name, sweep.uri, all_trials(sweep, files), files, self.finished_rows)
            if outcome == "FAILED":
                for line in sweep.trial_dir(str(trial)).error_lines()[-1:]:
                    log(f"{stage}: {trial}: {line}")
            done = sum(is_completed(files, name) for name in stage_names(sweep, stage, files))
            log(f"{stage}: {outcome} {trial} in {seconds:.1f}s ({done}/{total} of the stage done)")

    return Progress()


def run_stage(sweep: Sweep, stage: Stage, concurrency: int, runner: TrialRunner | None) -> None:
    from ray import tune

    total = sweep.planned_count(stage.name)
    planned = sweep.stage_trials(stage.name)
    files = trial_files(sweep.uri)
    done = [name for name in stage_names(sweep, stage.name, files) if is_completed(files, name)]
    if stage.search is None:
        blocked = [t.name for t in planned if t.depends_on and not is_completed(files, t.depends_on)]
        todo = [t.name for t in planned if t.name not in done and t.name not in blocked]
        if blocked:
            log(f"{stage.name}: {len(blocked)} trials wait for unfinished trials they start from; "
                "they run on resume once those finish")
        remaining = len(todo)
    else:
        blocked = [] if not planned[0].depends_on or is_completed(files, planned[0].depends_on) else [planned[0].name]
        remaining = 0 if blocked else total - len(done)
    log(f"{stage.name}: {total} trials, {len(done)} done, {remaining} to run, {concurrency} at a time")
    if remaining <= 0:
        return
    in_process = runs_in_process(sweep.spec)
    context = StageContext(sweep=sweep.spec.name, sweep_dir=sweep.uri, spec=sweep.spec, stage=stage.name,
                           trials={t.name: t for t in planned}, in_process=in_process, runner=runner)
    if stage.search is None:
        param_space = {"trial": tune.grid_search(todo)}
        settings: dict[str, Any] = {"trial_name_creator": lambda trial: trial.config["trial"]}
    else:
        param_space = search_space(stage.search)
        settings = search_settings(stage.search, len(done), concurrency)
        settings["trial_name_creator"] = search_trial_namer(stage.name, first=len(stage_names(sweep, stage.name, files)))
    experiment = sweep.dir / TUNE_DIR / stage.name
    shutil.rmtree(experiment, ignore_errors=True)  # the sweep directory, not Tune's state, says what is done
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, context=context),
                            trainable_resources(sweep.spec, in_process)),
        param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, reuse_actors=True,
                                    trial_dirname_creator=settings["trial_name_creator"], **settings),
        run_config=tune.RunConfig(
            name=stage.name, storage_path=str(sweep.dir / TUNE_DIR), verbose=0,
            failure_config=tune.FailureConfig(max_failures=sweep.spec.trial_retries),
            callbacks=[progress_callback(sweep, stage.name, total)]),
    )
    tuner.fit()


def run_sweep(sweep: Sweep, *, runner: TrialRunner | None = None) -> dict[str, Any]:
    """Run (or resume) every stage in order; returns the final status. Ray must be initialised."""
    import ray

    corpus_dir = ensure_corpus(sweep.spec)
    cluster = ray.cluster_resources()
    sweep.write_spec()
    sweep.write_plan(plan_summary(sweep, cluster))
    concurrency = max_concurrent_trials(sweep.spec, cluster)
    log(f"sweep {sweep.spec.name}: {sweep.uri} (corpus {corpus_dir})")
    write_driver_file(sweep.uri)
    try:
        for stage in sweep.spec.stages:
            run_stage(sweep, stage, concurrency, runner)
    finally:
        clear_driver_file(sweep.uri)
        files = trial_files(sweep.uri)
        write_results_table(sweep.spec.name, sweep.uri, all_trials(sweep, files), files)
    return sweep_status(sweep)
