"""The whole sweep as one Ray Tune run: a Searcher that hands Tune the next runnable trial, and a
scheduler that applies each search stage's early stopping to that stage's trials only.

`SweepSearcher` feeds Tune from a `TrialQueue`: a trial is suggested once the trial it starts from has
completed, whatever stage it is in, so independent trials run while a dependency trains and no GPU waits
for a stage boundary. Tune keeps its own scheduling, retries (`FailureConfig`) and callbacks. A search
stage's samples are queue entries too; a random search draws sample i's values from (seed, i), an Optuna
search asks its Optuna searcher, which learns from that stage's finished samples. A trial that trains a
mixture search's proposal gets the proposed mixture as its params when it is handed out (its proxies have
all finished by then: it waits for them in the queue).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from imlsweep.sweep.queue import TrialQueue
from imlsweep.sweep.search_space import sample_params, tune_space
from imlsweep.sweep.spec import Search

# A trial's last report carries this key: its absence in a trial's last result means Tune stopped it.
COMPLETED_KEY = "trial_completed"


@dataclass(frozen=True)
class QueueEntry:
    stage: str
    search_index: int | None = None  # the sample's index in a search stage
    proposal_of: str | None = None  # the mixture_search stage whose proposed mixture the trial trains


class SweepSearcher(Searcher):
    """Suggests `{"trial", "stage", "params"}` configs in dependency order; FINISHED when none is left.
    `on_dropped(trial, dependency)` is told of each trial that cannot run because its dependency failed or
    was stopped early. `proposals(stage)` is the dotted-key params of a mixture search stage's proposed
    mixture, or None when it has none (too few proxies completed; it says why): its trials are not run."""

    def __init__(self, queue: TrialQueue, entries: dict[str, QueueEntry], searches: dict[str, Search],
                 on_dropped: Callable[[str, str], None], proposals: Callable[[str], dict[str, Any] | None]) -> None:
        super().__init__()
        self.queue, self.entries, self.on_dropped, self.proposals = queue, entries, on_dropped, proposals
        self.searches = searches
        self.optuna = {stage: optuna_searcher(search) for stage, search in searches.items()
                       if search.algorithm == "optuna"}
        self.names: dict[str, str] = {}  # Tune trial id -> trial name

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        name = self.queue.pop()
        while name is not None and self.entries[name].proposal_of is not None:
            proposal = self.proposals(self.entries[name].proposal_of)
            if proposal is not None:
                break
            self.queue.failed(name)
            name = self.queue.pop()
        if name is None:
            return Searcher.FINISHED if self.queue.exhausted else None
        self.names[trial_id] = name
        entry = self.entries[name]
        params: dict[str, Any] = {}
        if entry.proposal_of is not None:
            params = proposal
        elif entry.search_index is not None:
            stage_optuna = self.optuna.get(entry.stage)
            params = (stage_optuna.suggest(trial_id) if stage_optuna is not None
                      else sample_params(self.searches[entry.stage], entry.search_index))
        return {"trial": name, "stage": entry.stage, "params": params}

    # Tune checkpoints its searcher with its experiment; the sweep directory says what is done instead.
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        stage_optuna = self.optuna.get(self.entries[self.names[trial_id]].stage)
        if stage_optuna is not None:
            stage_optuna.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        name = self.names.pop(trial_id, None)
        if name is None:
            return
        stage_optuna = self.optuna.get(self.entries[name].stage)
        if stage_optuna is not None:
            stage_optuna.on_trial_complete(trial_id, result, error)
        if not error and result is not None and result.get(COMPLETED_KEY):
            self.queue.completed(name)
            return
        for dropped in self.queue.failed(name):
            self.on_dropped(dropped, name)


def optuna_searcher(search: Search) -> Searcher:
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(space=tune_space(search), metric=search.metric, mode=search.mode, seed=search.seed)


class StageScheduler(FIFOScheduler):
    """FIFO for every trial, except that a stage with `scheduler: asha` has its own ASHA, which sees and
    stops only that stage's trials (a Tune run takes one scheduler). ASHA also stops a trial that reaches
    its last rung (`max_reports`); here that trial goes on to finish and be evaluated: reaching the last
    rung is surviving it."""

    def __init__(self, searches: dict[str, Search]) -> None:
        super().__init__()
        self.max_reports = {stage: search.max_reports for stage, search in searches.items()}
        self.asha = {stage: ASHAScheduler(metric=search.metric, mode=search.mode, grace_period=search.grace_period,
                                          reduction_factor=search.reduction_factor, max_t=search.max_reports)
                     for stage, search in searches.items() if search.scheduler == "asha"}

    def _stage_scheduler(self, trial: Any) -> ASHAScheduler | None:
        return self.asha.get(trial.config.get("stage"))

    def on_trial_add(self, tune_controller, trial) -> None:
        if (scheduler := self._stage_scheduler(trial)) is not None:
            scheduler.on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict[str, Any]) -> str:
        scheduler = self._stage_scheduler(trial)
        if scheduler is None or result.get(COMPLETED_KEY):  # a trial's last report is never cut
            return TrialScheduler.CONTINUE
        action = scheduler.on_trial_result(tune_controller, trial, result)
        if result.get("training_iteration", 0) >= self.max_reports[trial.config["stage"]]:
            return TrialScheduler.CONTINUE
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict[str, Any]) -> None:
        if (scheduler := self._stage_scheduler(trial)) is not None:
            scheduler.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        if (scheduler := self._stage_scheduler(trial)) is not None:
            scheduler.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        if (scheduler := self._stage_scheduler(trial)) is not None:
            scheduler.on_trial_error(tune_controller, trial)
