"""Running a sweep: one Ray Tune run for every trial of every stage, each the function trainable of
`imlsweep.sweep.trainable`, handed out by `SweepSearcher` as soon as the trial it starts from has
completed (`imlsweep.sweep.scheduling`). Stages stay names, labels and the spec's order; they are no
barrier, except that a mixture search's proposed trials wait for all its proxy trials to finish, when the
driver fits them and proposes the mixture those trials train (`imlsweep.sweep.proposal`). Single-worker trials run in the trainable's own process, and Tune reuses that process for the
next trial, so short trials pay no per-trial process start. Tune's own experiment state stays in the
sweep's folder on this machine.

The sweep directory, not Tune's experiment state, says what is done: a trial with `trial_result.json`
(completed, or stopped early) is never run again, so `run` and `resume` are the same loop over what is
left. A trial cut off by a dead driver reruns under its own name, and Ray Train finds its checkpoints in
its trial directory and resumes from them; a trial that failed runs again with fresh retries.

Bookkeeping per finished trial is constant: one read of that trial's files, counts kept in memory, and
results.parquet rewritten at most every `RESULTS_EVERY_S` seconds (and at the end).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections import Counter
from typing import Any

from imlsweep.sweep.expand import PlannedTrial
from imlsweep.sweep.estimate import Estimator
from imlsweep.sweep.plan import max_concurrent_trials, plan_summary
from imlsweep.sweep.proposal import MixtureProposals
from imlsweep.sweep.queue import QueuedTrial, TrialQueue
from imlsweep.sweep.results import DEFAULT_EVAL, other_evaluations, trial_rows, write_table
from imlsweep.sweep.scheduling import QueueEntry, StageScheduler, SweepSearcher
from imlsweep.sweep.state import all_trials, clear_driver_file, is_completed, is_done, trial_files, write_driver_file
from imlsweep.sweep.sweep import Sweep
from imlsweep.sweep.trainable import SweepContext, TrialRunner, runs_in_process, stopped_result, trainable, trainable_resources
from imlsweep.trial_dir import has_failed_attempts

TUNE_DIR = ".tune"  # Tune's own experiment state, in the sweep's local folder
RESULTS_EVERY_S = 10.0


def log(message: str) -> None:
    print(f"[sweep] {message}", file=sys.stderr, flush=True)


class ResultsBook:
    """The rows of results.parquet, kept in memory (a finished trial's rows never change) and written
    whole at most every `every_s` seconds, so each finished trial costs the same whatever came before.
    Rows of later evaluations (`sweep eval`) are read once and written along unchanged."""

    def __init__(self, sweep: Sweep, every_s: float) -> None:
        self.sweep, self.every_s = sweep, every_s
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.others = other_evaluations(sweep.uri, DEFAULT_EVAL)
        self.written_at = 0.0
        self.dirty = False

    def add(self, trial: PlannedTrial) -> None:
        trial_dir = self.sweep.trial_dir(trial.name)
        result = trial_dir.read_result()
        self.rows[trial.name] = trial_rows(self.sweep.spec.name, trial, trial_dir, result)
        self.dirty = True
        if time.monotonic() - self.written_at >= self.every_s:
            self.write()

    def write(self) -> None:
        rows = [row for trial_rows_ in self.rows.values() for row in trial_rows_]
        write_table(self.sweep.uri, rows, self.others)
        self.written_at, self.dirty = time.monotonic(), False


def progress_callback(sweep: Sweep, context: SweepContext, book: ResultsBook, totals: Counter, done: Counter):
    from ray import tune

    class SweepProgress(tune.Callback):
        """Per-trial progress lines; a trial Tune stopped early gets its `stopped` result here; rows to
        the results book."""

        def __init__(self) -> None:
            self.started: dict[str, float] = {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.started[str(trial)] = time.time()
            log(f"start {trial}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            planned = context.trial(trial.config)
            outcome = "completed"
            if sweep.trial_dir(planned.name).read_result() is None:  # it never wrote its result: Tune stopped it
                sweep.trial_dir(planned.name).write_result(stopped_result(planned, trial.last_result or {}))
                outcome = "stopped"
            self.finish(trial, planned, outcome)

        def on_trial_error(self, iteration, trials, trial, **info):
            planned = context.trial(trial.config)
            for line in sweep.trial_dir(planned.name).error_lines()[-1:]:
                log(f"{planned.name}: {line}")
            self.finish(trial, planned, "FAILED")

        def finish(self, trial, planned: PlannedTrial, outcome: str) -> None:
            seconds = time.time() - self.started.get(str(trial), time.time())
            book.add(planned)
            done[planned.stage] += 1
            log(f"{outcome} {planned.name} in {seconds:.1f}s "
                f"({done[planned.stage]}/{totals[planned.stage]} of stage {planned.stage} done)")

    return SweepProgress()


def sweep_queue(sweep: Sweep, trials: list[PlannedTrial], files,
                estimator: Estimator) -> tuple[TrialQueue, dict[str, QueueEntry]]:
    """The queue of the trials left to run, longest estimated chain first; the done ones release their
    dependents at once."""
    search_stages = {stage.name for stage in sweep.spec.stages if stage.search is not None}
    proxies = {stage.name: tuple(trial.name for trial in sweep.stage_trials(stage.name))
               for stage in sweep.spec.stages if stage.mixture_search is not None}
    entries, queued = {}, []
    per_stage: Counter = Counter()
    for trial in trials:
        index = per_stage[trial.stage] if trial.stage in search_stages else None
        per_stage[trial.stage] += 1
        if is_done(files, trial.name):
            continue
        entries[trial.name] = QueueEntry(stage=trial.stage, search_index=index, proposal_of=trial.proposal_of)
        queued.append(QueuedTrial(trial.name, trial.depends_on, estimator.trial(trial.config).seconds,
                                  tuple(trial.merges), after=proxies.get(trial.proposal_of, ())))
    completed = {trial.name for trial in trials if is_completed(files, trial.name)}
    return TrialQueue(queued, done=completed), entries


def run_sweep(sweep: Sweep, *, runner: TrialRunner | None = None, holds_workers: bool = False,
              callbacks: tuple[Any, ...] = (), estimator: Estimator | None = None) -> dict[str, Any]:
    """Run (or resume) the sweep; returns the final status. Ray must be initialised and the corpus built
    (`imlsweep.sweep.corpus.ensure_corpus`). `runner` replaces the trainer (tests, `sweep simulate`);
    `holds_workers`: the trainable holds every worker's resources itself; `callbacks`: more Tune callbacks;
    `estimator`: the trials' estimates for plan.json and the queue's order (default: from the built corpus)."""
    import ray

    from imlsweep.corpus.store import Corpus
    from imlsweep.sweep.state import sweep_status

    cluster = ray.cluster_resources()
    estimator = estimator or Estimator(sweep.spec, Corpus.open(sweep.corpus_dir))
    sweep.write_spec()
    sweep.write_plan(plan_summary(sweep, cluster, estimator))
    concurrency = max_concurrent_trials(sweep.spec, cluster)
    trials = all_trials(sweep)
    files = trial_files(sweep.uri)
    queue, entries = sweep_queue(sweep, trials, files, estimator)
    totals = Counter(trial.stage for trial in trials)
    done = Counter(trial.stage for trial in trials if is_done(files, trial.name))
    log(f"sweep {sweep.spec.name}: {sweep.uri} (corpus {sweep.corpus_dir})")
    log(f"{len(trials)} trials, {sum(done.values())} done, {queue.pending} to run, {concurrency} at a time; "
        + ", ".join(f"{stage} {done[stage]}/{totals[stage]}" for stage in totals))
    for dependency, names in queue.unrunnable.items():
        log(f"{len(names)} trials start from {dependency}, which did not complete: not run ({', '.join(names[:3])}"
            + (", ..." if len(names) > 3 else "") + ")")
    book = ResultsBook(sweep, RESULTS_EVERY_S)
    for trial in trials:  # rows of trials an earlier run finished (or that failed before)
        if is_done(files, trial.name) or has_failed_attempts(files.get(trial.name, set())):
            book.rows[trial.name] = trial_rows(sweep.spec.name, trial, sweep.trial_dir(trial.name),
                                               sweep.trial_dir(trial.name).read_result())
    write_driver_file(sweep.uri)
    try:
        if not queue.exhausted:
            run_tune(sweep, queue, entries, concurrency, runner, holds_workers, book, totals, done, callbacks)
    finally:
        clear_driver_file(sweep.uri)
        book.write()
    return sweep_status(sweep)


def run_tune(sweep: Sweep, queue: TrialQueue, entries: dict[str, QueueEntry], concurrency: int,
             runner: TrialRunner | None, holds_workers: bool, book: ResultsBook, totals: Counter, done: Counter,
             callbacks: tuple[Any, ...]) -> None:
    from ray import tune

    in_process = runs_in_process(sweep.spec)
    templates = {trial.stage: trial for trial in sweep.trials
                 if next(s for s in sweep.spec.stages if s.name == trial.stage).search is not None}
    context = SweepContext(sweep=sweep.spec.name, sweep_dir=sweep.uri, spec=sweep.spec,
                           trials=sweep.trials_by_name | templates, in_process=in_process, runner=runner)
    searches = {stage.name: stage.search for stage in sweep.spec.stages if stage.search is not None}

    def dropped(trial: str, dependency: str) -> None:
        log(f"not running {trial}: it starts from {dependency}, which did not complete")

    searcher = SweepSearcher(queue, entries, searches, on_dropped=dropped, proposals=MixtureProposals(sweep, log))
    experiment = sweep.dir / TUNE_DIR / sweep.spec.name
    shutil.rmtree(experiment, ignore_errors=True)  # the sweep directory, not Tune's state, says what is done
    # Tune's default loggers write every report of every trial to its experiment folder: nobody reads them
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, context=context),
                            trainable_resources(sweep.spec, in_process, holds_workers)),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=StageScheduler(searches),
                                    num_samples=queue.pending, max_concurrent_trials=concurrency, reuse_actors=True,
                                    trial_name_creator=lambda trial: trial.config["trial"],
                                    trial_dirname_creator=lambda trial: trial.config["trial"]),
        run_config=tune.RunConfig(
            name=sweep.spec.name, storage_path=str(sweep.dir / TUNE_DIR), verbose=0,
            failure_config=tune.FailureConfig(max_failures=sweep.spec.trial_retries),
            callbacks=[progress_callback(sweep, context, book, totals, done), *callbacks]),
    )
    # with those loggers off, Tune's result grid warns that it finds no per-trial files: there are none by design
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    tuner.fit()
