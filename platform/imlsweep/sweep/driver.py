"""Running a sweep on Ray Tune: one Tuner per stage, in order, each trial a function trainable that
calls `run_trial` (which builds and fits a `TorchTrainer`, the Ray Train V2 pattern) with Tune's
report callback. Single-worker trials run in the trainable's own process, and
Tune reuses that process for the next trial, so short trials pay no per-trial process start.
Trials and the driver read and write the sweep directory through `imlsweep.train.storage` (a local
folder or a bucket); Tune's own experiment state stays in the sweep's folder on this machine.

The sweep directory, not Tune's experiment state, says what is done: a trial with
`trial_result.json` is never run again, so `run` and `resume` are the same loop over what is left.
A trial cut off by a dead driver reruns under its own name, and Ray Train finds its checkpoints in
its trial directory and resumes from them; a trial that failed runs again with fresh retries.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from imlsweep.sweep.expand import PlannedTrial, axis_column, label_value, set_dotted
from imlsweep.sweep.loading import Sweep, ensure_corpus, local_dir, write_resolved_spec
from imlsweep.sweep.plan import stage_trial_count
from imlsweep.sweep.results import read_task_metrics, write_results
from imlsweep.sweep.status import all_trials, stage_names, sweep_status_of
from imlsweep.sweep.spec import Search, Stage, SweepSpec
from imlsweep.sweep.state import (RESULT_FILE, clear_driver_file, error_lines, is_completed, read_result, record_error,
                                  trial_files, write_driver_file, write_json)
from imlsweep.train import storage

TUNE_DIR = ".tune"  # Tune's own experiment state, one experiment per stage, in the sweep's local folder
# (config, storage path, callbacks) -> an object with TrialResult's fields
TrialRunner = Callable[..., Any]


def max_concurrent_trials(spec: SweepSpec, cluster: dict[str, float]) -> int:
    """Trials that fit at once: GPUs bound it on a GPU cluster. Each trial keeps one CPU beyond its
    workers' for its data pipeline (Ray Data tasks), so training workers never starve the data."""
    if spec.concurrency != "auto":
        return spec.concurrency
    resources = spec.resources
    limits = [int(cluster.get("CPU", 0) // (1 + resources.workers * resources.cpus_per_worker))]
    gpus_per_trial = resources.workers * resources.gpus_per_worker
    if gpus_per_trial > 0:
        limits.append(int(cluster.get("GPU", 0) // gpus_per_trial))
    return max(1, min(limits))


@dataclass
class StageContext:
    """What every trainable of a stage needs; shipped once through the object store."""

    sweep: str
    sweep_dir: str  # a storage location (Sweep.uri)
    spec: SweepSpec
    stage: str
    trials: dict[str, PlannedTrial]  # a search stage has one template trial
    in_process: bool  # trials run in the trainable's own process (see `runs_in_process`)
    runner: TrialRunner | None = None  # None: imlsweep.train.trial.run_trial


def trainable(params: dict[str, Any], context: StageContext) -> None:
    """The Tune function trainable of one trial."""
    from ray import tune

    name = tune.get_context().get_trial_name()
    trial = context.trials.get(name) or search_trial(context, name, params)
    trial_dir = storage.join(context.sweep_dir, name)
    finished = read_result(context.sweep_dir, name)
    if finished is not None:  # finished just before a driver died: nothing to do
        tune.report(final_report(finished))
        return
    start = time.perf_counter()
    try:
        result = run_trial_here(context, trial)
    except Exception as error:
        record_error(trial_dir, error)
        raise
    summary = {
        "trial": name, "stage": trial.stage, "labels": trial.labels,
        "metrics": json_safe(result.metrics), "eval_metrics": json_safe(result.eval_metrics),
        "train_time_s": result.train_time_s, "train_tokens": result.train_tokens,
        "train_examples": result.train_examples, "hf_model_dir": result.hf_model_dir,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if context.spec.tracking.wandb:
        from imlsweep.sweep.tracking import log_trial_run, numeric_items

        summary["wandb_run_id"] = log_trial_run(
            context.spec.tracking, sweep=context.sweep, stage=trial.stage, trial=name, trial_dir=trial_dir,
            wandb_dir=local_dir(context.sweep_dir) / name, labels=trial.labels, trial_config=trial.config,
            summary=numeric_items(summary["metrics"]) | {k: summary[k] for k in ("train_time_s", "train_tokens", "train_examples")},
            tasks=read_task_metrics(trial_dir))
    if context.spec.retention.checkpoints == "delete_when_done":
        delete_checkpoints(trial_dir)
    summary["trial_wall_s"] = time.perf_counter() - start  # training plus everything around it in the trainable
    write_json(storage.join(trial_dir, RESULT_FILE), summary)  # last: the proof the trial is done
    tune.report(final_report(summary))


def run_trial_here(context: StageContext, trial: PlannedTrial) -> Any:
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from imlsweep.config import validate_config
    from imlsweep.train.config import TrialConfig

    config = validate_config(trial.config, TrialConfig, f"trial {trial.name}")
    if context.runner is not None:
        return context.runner(config, context.sweep_dir, callbacks=())
    from imlsweep.train.trial import run_trial

    return run_trial(config, context.sweep_dir, callbacks=[TuneReportCallback()], in_process=context.in_process,
                     on_report=tune.report)


def runs_in_process(spec: SweepSpec) -> bool:
    """Single-worker trials run inside the (reused) trainable."""
    return spec.resources.in_process and spec.resources.workers == 1


def trainable_resources(spec: SweepSpec, in_process: bool) -> dict[str, float]:
    """An in-process trial trains in the trainable, which holds the worker's CPU and GPU; otherwise the
    trainable only waits on its TorchTrainer and holds (almost) nothing the workers or data need."""
    if not in_process:
        return {"CPU": 0.01}
    return {"CPU": spec.resources.cpus_per_worker, "GPU": spec.resources.gpus_per_worker}


def search_trial(context: StageContext, name: str, params: dict[str, Any]) -> PlannedTrial:
    """A search stage's trial: the template with Tune's sampled values at their dotted keys."""
    (template,) = context.trials.values()
    config = json.loads(json.dumps(template.config))
    labels = dict(template.labels)
    for key, value in params.items():
        set_dotted(config, key, value, f"search space of stage {context.stage}")
        labels[axis_column(key)] = label_value(value)
    config["name"] = name
    return PlannedTrial(name=name, stage=template.stage, config=config, labels=labels, depends_on=template.depends_on)


def final_report(summary: dict[str, Any]) -> dict[str, float]:
    from imlsweep.sweep.tracking import numeric_items

    return numeric_items(summary.get("metrics", {})) | numeric_items(
        {key: summary.get(key) for key in ("train_time_s", "train_tokens", "train_examples")})


def json_safe(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))


def delete_checkpoints(trial_dir: str) -> None:
    for name in storage.list_dirs(trial_dir):
        if name.startswith("checkpoint_"):
            storage.delete(storage.join(trial_dir, name))


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
            write_results(sweep.spec.name, sweep.uri, all_trials(sweep), files, self.finished_rows)
            if outcome == "FAILED":
                for line in error_lines(storage.join(sweep.uri, str(trial)))[-1:]:
                    log(f"{stage}: {trial}: {line}")
            done = sum(is_completed(files, name) for name in stage_names(sweep, stage))
            log(f"{stage}: {outcome} {trial} in {seconds:.1f}s ({done}/{total} of the stage done)")

    return Progress()


def run_stage(sweep: Sweep, stage: Stage, concurrency: int, runner: TrialRunner | None) -> None:
    from ray import tune

    total = stage_trial_count(sweep.spec, sweep.trials, stage.name)
    planned = sweep.stage_trials(stage.name)
    files = trial_files(sweep.uri)
    done = [name for name in stage_names(sweep, stage.name) if is_completed(files, name)]
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
        settings["trial_name_creator"] = search_trial_namer(stage.name, first=len(stage_names(sweep, stage.name)))
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
            failure_config=tune.FailureConfig(max_failures=sweep.spec.max_failures),
            callbacks=[progress_callback(sweep, stage.name, total)]),
    )
    tuner.fit()


def run_sweep(sweep: Sweep, *, runner: TrialRunner | None = None) -> dict[str, Any]:
    """Run (or resume) every stage in order; returns the final status. Ray must be initialised."""
    import ray

    corpus_dir = ensure_corpus(sweep)
    write_resolved_spec(sweep, {s.name: stage_trial_count(sweep.spec, sweep.trials, s.name) for s in sweep.spec.stages})
    concurrency = max_concurrent_trials(sweep.spec, ray.cluster_resources())
    log(f"sweep {sweep.spec.name}: {sweep.uri} (corpus {corpus_dir})")
    write_driver_file(sweep.uri)
    try:
        for stage in sweep.spec.stages:
            run_stage(sweep, stage, concurrency, runner)
    finally:
        clear_driver_file(sweep.uri)
        write_results(sweep.spec.name, sweep.uri, all_trials(sweep), trial_files(sweep.uri))
    return sweep_status_of(sweep)
