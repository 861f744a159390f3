"""Where a sweep stands, read from its directory alone, so `status` and `resume` work after a crash.

A trial with `trial_result.json` finished (`imlsweep.trial_dir`); one with a directory but no result was
cut off, failed (it has `trial_error.txt`) or is running. The driver writes `driver.json` with its pid
while it runs. Everything is read from one recursive listing of the sweep directory: on an object store,
asking for each trial's files would cost a request per trial and file.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from fnmatch import fnmatchcase
from typing import Any

from imlsweep import storage
from imlsweep.sweep.expand import PlannedTrial
from imlsweep.sweep.sweep import Sweep
from imlsweep.trial_dir import has_failed_attempts, is_finished

DRIVER_FILE = "driver.json"
STATES = ("completed", "running", "interrupted", "error", "pending")
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


def is_completed(files: TrialFiles, trial: str) -> bool:
    return is_finished(files.get(trial, set()))


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
    if is_completed(files, trial):
        return "completed"
    if trial not in files:
        return "pending"
    if driver_running:
        return "running"
    return "error" if has_failed_attempts(files[trial]) else "interrupted"


def stage_names(sweep: Sweep, stage: str, files: TrialFiles) -> list[str]:
    """Trial names of a stage: planned ones, or for a search stage those found in the listing."""
    spec_stage = next(s for s in sweep.spec.stages if s.name == stage)
    if spec_stage.search is None:
        return [trial.name for trial in sweep.stage_trials(stage)]
    return sorted(name for name in files if fnmatchcase(name, f"{stage}-s[0-9]*"))


def all_trials(sweep: Sweep, files: TrialFiles) -> list[PlannedTrial]:
    """Planned trials plus the search trials that ran (their labels come from their result files);
    a search trial's config lives in its trial directory, so it is the template's here."""
    trials = []
    for stage in sweep.spec.stages:
        if stage.search is None:
            trials += sweep.stage_trials(stage.name)
        else:
            (template,) = sweep.stage_trials(stage.name)
            trials += [PlannedTrial(name=name, stage=stage.name, config=template.config, labels=template.labels)
                       for name in stage_names(sweep, stage.name, files)]
    return trials


def sweep_status(sweep: Sweep) -> dict[str, Any]:
    """Counts by state (overall and per stage) and the failing trials with their error lines; a search
    stage counts its samples not yet drawn as pending."""
    running = driver_alive(sweep.uri)
    files = trial_files(sweep.uri)
    trials = all_trials(sweep, files)
    states = {trial.name: trial_state(files, trial.name, running) for trial in trials}
    by_stage: dict[str, Counter] = {}
    for trial in trials:
        by_stage.setdefault(trial.stage, Counter())[states[trial.name]] += 1
    for stage in sweep.spec.stages:
        undrawn = sweep.planned_count(stage.name) - sum(by_stage.get(stage.name, Counter()).values())
        if stage.search is not None and undrawn > 0:
            by_stage.setdefault(stage.name, Counter())["pending"] += undrawn
    failing = [{"trial": trial.name, "state": states[trial.name], "errors": sweep.trial_dir(trial.name).error_lines()}
               for trial in trials
               if has_failed_attempts(files.get(trial.name, set())) and states[trial.name] != "completed"]
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
