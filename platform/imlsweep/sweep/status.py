"""`sweep status`: counts by state, by stage, and the failing trials with their error lines."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from imlsweep.sweep.expand import PlannedTrial
from imlsweep.sweep.loading import Sweep
from imlsweep.sweep.plan import stage_trial_count
from imlsweep.sweep.state import sweep_status
from imlsweep.train import storage


def stage_names(sweep: Sweep, stage: str) -> list[str]:
    """Trial names of a stage: planned ones, or for a search stage those found on disk."""
    spec_stage = next(s for s in sweep.spec.stages if s.name == stage)
    if spec_stage.search is None:
        return [trial.name for trial in sweep.stage_trials(stage)]
    return [name for name in storage.list_dirs(sweep.uri) if fnmatchcase(name, f"{stage}-s[0-9]*")]


def all_trials(sweep: Sweep) -> list[PlannedTrial]:
    """Planned trials plus the search trials that ran (their labels come from their result files)."""
    trials = []
    for stage in sweep.spec.stages:
        if stage.search is None:
            trials += sweep.stage_trials(stage.name)
        else:
            (template,) = sweep.stage_trials(stage.name)
            trials += [PlannedTrial(name=name, stage=stage.name, config={}, labels=template.labels)
                       for name in stage_names(sweep, stage.name)]
    return trials


def sweep_status_of(sweep: Sweep) -> dict[str, Any]:
    """The state of every trial; a search stage counts its samples not yet drawn as pending."""
    trials = [(trial.stage, trial.name) for trial in all_trials(sweep)]
    status = sweep_status(sweep.uri, trials)
    for stage in sweep.spec.stages:
        if stage.search is not None:
            undrawn = stage_trial_count(sweep.spec, sweep.trials, stage.name) - len(stage_names(sweep, stage.name))
            if undrawn <= 0:
                continue
            status["counts"]["pending"] += undrawn
            status["total_trials"] += undrawn
            status["by_stage"].setdefault(stage.name, {})["pending"] = undrawn
    return status


def format_status(status: dict[str, Any]) -> str:
    counts = ", ".join(f"{state} {n}" for state, n in status["counts"].items() if n)
    lines = [f"{status['sweep_dir']}: {status['total_trials']} trials: {counts}"
             + (" (driver running)" if status["driver_running"] else "")]
    for stage, counts_by_state in status["by_stage"].items():
        lines.append(f"  {stage}: " + ", ".join(f"{state} {n}" for state, n in counts_by_state.items()))
    for failing in status["failing"]:
        lines.append(f"  {failing['state']}: {failing['trial']}")
        lines += [f"      {line}" for line in failing["errors"][-3:]]
    return "\n".join(lines)
