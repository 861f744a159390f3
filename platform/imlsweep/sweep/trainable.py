"""The Ray Tune function trainable of every sweep trial.

Tune hands it `{"trial", "stage", "params"}` (`imlsweep.sweep.scheduling`): the trial's name, its stage
and, for a search sample, its drawn values (for a mixture search's proposed trial, the proposed mixture). It calls `run_trial` (which builds and fits a `TorchTrainer`, the Ray Train V2 pattern, or trains in this
process for a single-worker trial) inside the trial's W&B run (`imlsweep.sweep.tracking.LiveRun`: curves
while it trains, summary and task table at the end), applies the sweep's retention and writes
`trial_result.json` last: the proof the trial is done. A trial that finished just before a driver died is
not run again.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

from imlsweep.sweep.expand import PlannedTrial, sampled_trial
from imlsweep.sweep.spec import SweepSpec
from imlsweep.trial_dir import TrialDir, TrialResult

# (trial config, storage path, callbacks) -> an object with TrialRun's fields; tests replace the trainer
TrialRunner = Callable[..., Any]


@dataclass
class SweepContext:
    """What every trainable of the sweep needs; shipped once through the object store."""

    sweep: str
    sweep_dir: str  # a storage location (Sweep.uri)
    spec: SweepSpec
    trials: dict[str, PlannedTrial]  # planned trials by name; a search stage's template under the stage's name
    in_process: bool  # trials run in the trainable's own process (see `runs_in_process`)
    runner: TrialRunner | None = None  # None: imlsweep.train.trial.run_trial

    def trial(self, params: dict[str, Any]) -> PlannedTrial:
        """The trial a Tune config stands for: planned (a proposed mixture's with that mixture set), or a search
        sample made from its stage's template."""
        name = params["trial"]
        if name in self.trials:
            planned = self.trials[name]
            if planned.proposal_of is None or not params["params"]:
                return planned
            return sampled_trial(planned, name, params["params"], f"proposal of stage {planned.proposal_of}",
                                 label=False)
        template = self.trials[params["stage"]]
        return sampled_trial(template, name, params["params"], f"search space of stage {params['stage']}")


def runs_in_process(spec: SweepSpec) -> bool:
    """Single-worker trials run inside the (reused) trainable."""
    return spec.resources.in_process and spec.resources.workers == 1


def trainable_resources(spec: SweepSpec, in_process: bool, holds_workers: bool = False) -> Any:
    """An in-process trial trains in the trainable, which holds the worker's CPU and GPU; otherwise the
    trainable only waits on its TorchTrainer and holds (almost) nothing the workers or data need.
    `holds_workers` (`sweep simulate`, where no TorchTrainer starts): the trainable holds every worker's
    resources itself, in one placement group shaped as Ray Train would ask for them."""
    resources = spec.resources
    worker = {"CPU": resources.cpus_per_worker, "GPU": resources.gpus_per_worker}
    if in_process:
        return worker
    if not holds_workers:
        return {"CPU": 0.01}
    from ray import tune

    return tune.PlacementGroupFactory([{"CPU": 0.01}] + [worker] * resources.workers, strategy="PACK")


def trainable(params: dict[str, Any], context: SweepContext) -> None:
    from ray import tune

    trial = context.trial(params)
    name = trial.name
    trial_dir = TrialDir.of(context.sweep_dir, name)
    finished = trial_dir.read_result()
    if finished is not None:  # finished just before a driver died: nothing to do
        tune.report(final_report(finished))
        return
    start = time.perf_counter()
    live = live_run(context, trial, trial_dir)
    with live or contextlib.nullcontext():
        try:
            run = run_trial_here(context, trial)
        except Exception as error:
            trial_dir.record_error(error)
            raise
        metrics = json.loads(json.dumps(run.metrics, default=str))
        if live is not None:
            from imlsweep.sweep.tracking import numeric_items

            live.finish(numeric_items(metrics) | {"train_time_s": run.train_time_s, "train_tokens": run.train_tokens,
                                                  "train_examples": run.train_examples},
                        trial_dir.task_metrics())
    if context.spec.retention.checkpoints == "delete_when_done":
        trial_dir.delete_checkpoints()
    result = TrialResult(trial=name, stage=trial.stage, labels=trial.labels, metrics=metrics,
                         train_time_s=run.train_time_s, train_tokens=run.train_tokens,
                         train_examples=run.train_examples, hf_model_dir=run.hf_model_dir,
                         wandb_run_id=live.run_id if live is not None else None,
                         finished=time.strftime("%Y-%m-%dT%H:%M:%S"), trial_wall_s=time.perf_counter() - start)
    trial_dir.write_result(result)  # last: the proof the trial is done
    tune.report(final_report(result))


def live_run(context: SweepContext, trial: PlannedTrial, trial_dir: TrialDir) -> Any:
    """The trial's W&B run for this attempt (`imlsweep.sweep.tracking.LiveRun`), or None without W&B."""
    if not context.spec.tracking.wandb:
        return None
    from imlsweep.storage import local_folder
    from imlsweep.sweep.tracking import LiveRun

    return LiveRun(context.spec.tracking, sweep=context.sweep, stage=trial.stage, trial_dir=trial_dir,
                   wandb_dir=local_folder(trial_dir.uri), labels=trial.labels,
                   trial_config=trial.config.model_dump(mode="json"))


def run_trial_here(context: SweepContext, trial: PlannedTrial) -> Any:
    if context.runner is not None:
        return context.runner(trial.config, context.sweep_dir, callbacks=())
    if trial.config.merge is not None:
        return run_merge_here(context, trial)
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from imlsweep.train.trial import run_trial

    return run_trial(trial.config, context.sweep_dir, callbacks=[TuneReportCallback()], in_process=context.in_process,
                     on_report=tune.report)


def run_merge_here(context: SweepContext, trial: PlannedTrial) -> Any:
    """A merge trial in this process when trials run in process; else in a Ray task holding one worker's
    resources (a GPU evaluates the merged model where the trial's workers would have one)."""
    from imlsweep.train.merge_trial import run_merge_trial

    if context.in_process:
        return run_merge_trial(trial.config, context.sweep_dir)
    import ray

    train = trial.config.train
    task = ray.remote(run_merge_trial).options(num_cpus=train.cpus_per_worker, num_gpus=train.gpus_per_worker)
    return ray.get(task.remote(trial.config, context.sweep_dir))


def final_report(result: TrialResult) -> dict[str, float]:
    """The trial's last report to Tune: its final metrics and run figures, as flat numbers, marked as the
    end (`COMPLETED_KEY`), which a trial Tune stopped early never reports."""
    from imlsweep.sweep.scheduling import COMPLETED_KEY
    from imlsweep.sweep.tracking import numeric_items

    return numeric_items(result.metrics) | {"train_time_s": result.train_time_s,
                                            "train_tokens": float(result.train_tokens),
                                            "train_examples": float(result.train_examples), COMPLETED_KEY: 1.0}


def stopped_result(trial: PlannedTrial, last_report: dict[str, Any]) -> TrialResult:
    """The record of a trial its scheduler stopped: its labels and the metrics it last reported."""
    from imlsweep.sweep.tracking import numeric_items

    metrics = {key: value for key, value in numeric_items(last_report).items() if key not in TUNE_BOOKKEEPING}
    return TrialResult(trial=trial.name, stage=trial.stage, status="stopped", labels=trial.labels, metrics=metrics,
                       train_time_s=float(last_report.get("train_time_s", 0.0)),
                       train_tokens=int(last_report.get("train_tokens", 0)),
                       train_examples=int(last_report.get("train_examples", 0)), hf_model_dir=None,
                       finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
                       trial_wall_s=float(last_report.get("time_total_s", 0.0)))


# What Tune adds to every report; not the trial's metrics.
TUNE_BOOKKEEPING = {"timestamp", "time_this_iter_s", "time_total_s", "training_iteration", "pid", "time_since_restore",
                    "iterations_since_restore", "done", "date", "config", "node_ip", "hostname", "checkpoint_dir_name",
                    "should_checkpoint"}
