"""Where a sweep stands, read from its directory alone, so `status` and `resume` work after a crash.

A trial with `trial_result.json` is done (`imlsweep.trial_dir`): completed, or stopped early by its
stage's scheduler (never run again either way); one with a directory but no result was cut off, failed
(it has `trial_error.txt`) or is running. The driver writes `driver.json` with its pid
while it runs. Everything is read from one recursive listing of the sweep directory: on an object store,
asking for each trial's files would cost a request per trial and file.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from typing import Any

from imlsweep import storage
from imlsweep.sweep.expand import PlannedTrial
from imlsweep.sweep.search_space import sample_name
from imlsweep.sweep.sweep import Sweep
from imlsweep.trial_dir import has_failed_attempts, is_finished, is_stopped

DRIVER_FILE = "driver.json"
STATES = ("completed", "stopped", "running", "interrupted", "error", "pending")
# The files of each folder of a sweep: folder name -> names of the files directly in it
TrialFiles = dict[str, set[str]]


def trial_files(sweep_dir: str) -> TrialFiles:
    """The files directly in each folder of the sweep (an empty set for a folder without any)."""
    files: TrialFiles = {}
    for path, is_dir in storage.list_tree(sweep_dir):
        parts = path.split("/")
        if len(parts) > 1 or is_dir:
            names = files.setdefault(parts[0], set())
            if len(parts) == 2 and not is_dir:
                names.add(parts[1])
    return files


def is_done(files: TrialFiles, trial: str) -> bool:
    """Completed or stopped early: not to be run again."""
    return is_finished(files.get(trial, set()))


def is_completed(files: TrialFiles, trial: str) -> bool:
    """Done and not stopped early: later trials can start from it."""
    names = files.get(trial, set())
    return is_finished(names) and not is_stopped(names)


def write_driver_file(sweep_dir: str) -> None:
    storage.write_text(storage.join(sweep_dir, DRIVER_FILE), json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}))


def clear_driver_file(sweep_dir: str) -> None:
    storage.delete(storage.join(sweep_dir, DRIVER_FILE))


def driver_alive(sweep_dir: str) -> bool:
    text = storage.read_text(storage.join(sweep_dir, DRIVER_FILE))
    if text is None:
        return False
    info = json.loads(text)
    if info.get("host") != socket.gethostname():
        return True  # cannot check another machine's process: assume it runs
    try:
        os.kill(int(info["pid"]), 0)
    except (ProcessLookupError, PermissionError, ValueError):
        return False
    return True


def trial_state(files: TrialFiles, trial: str, driver_running: bool) -> str:
    if is_done(files, trial):
        return "stopped" if is_stopped(files[trial]) else "completed"
    if trial not in files:
        return "pending"
    if driver_running:
        return "running"
    return "error" if has_failed_attempts(files[trial]) else "interrupted"


def all_trials(sweep: Sweep) -> list[PlannedTrial]:
    """Every trial of the sweep in spec order, a search stage's samples (`<stage>-s0000`, ...) included;
    a sample's values and config are drawn when it runs (its result records them), so here it carries
    the stage's template config."""
    trials = []
    for stage in sweep.spec.stages:
        if stage.search is None:
            trials += sweep.stage_trials(stage.name)
        else:
            (template,) = sweep.stage_trials(stage.name)
            trials += [PlannedTrial(name=sample_name(stage.name, index), stage=stage.name, config=template.config,
                                    labels=template.labels, depends_on=template.depends_on)
                       for index in range(stage.search.num_samples)]
    return trials


def sweep_status(sweep: Sweep) -> dict[str, Any]:
    """Counts by state (overall and per stage) and the failing trials with their error lines."""
    running = driver_alive(sweep.uri)
    files = trial_files(sweep.uri)
    trials = all_trials(sweep)
    states = {trial.name: trial_state(files, trial.name, running) for trial in trials}
    by_stage: dict[str, Counter] = {}
    for trial in trials:
        by_stage.setdefault(trial.stage, Counter())[states[trial.name]] += 1
    failing = [{"trial": trial.name, "state": states[trial.name], "errors": sweep.trial_dir(trial.name).error_lines()}
               for trial in trials
               if has_failed_attempts(files.get(trial.name, set())) and states[trial.name] not in ("completed", "stopped")]
    totals = sum(by_stage.values(), Counter())
    return {
        "sweep_dir": sweep.uri,
        "driver_running": running,
        "total_trials": sum(totals.values()),
        "counts": {state: totals[state] for state in STATES},
        "by_stage": {stage: {state: counts[state] for state in STATES if counts[state]}
                     for stage, counts in by_stage.items()},
        "failing": failing,
    }


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
