"""Where a sweep stands, read from its directory alone (so `status` and `resume` work after a crash).

A trial directory gets `trial_result.json` when the trial finished (the only proof of completion)
and `trial_error.txt` with one block per failed attempt. The driver writes `driver.json` with its
pid while it runs. A trial with a directory but neither file was cut off (or is running).
Sweep and trial directories are storage locations (`imlsweep.train.storage`): a local folder or an
s3:// / gs:// URI.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from collections import Counter
from typing import Any

from imlsweep.train import storage

RESULT_FILE = "trial_result.json"
ERROR_FILE = "trial_error.txt"
DRIVER_FILE = "driver.json"
STATES = ("completed", "running", "interrupted", "error", "pending")
# The files of each folder of a sweep: folder name -> names of the files directly in it (see `trial_files`)
TrialFiles = dict[str, set[str]]


def write_json(uri: str, data: Any) -> None:
    storage.write_text(uri, json.dumps(data, indent=1, default=str))


def read_result(sweep_dir: str, trial: str) -> dict[str, Any] | None:
    text = storage.read_text(storage.join(sweep_dir, trial, RESULT_FILE))
    return json.loads(text) if text is not None else None


def trial_files(sweep_dir: str) -> TrialFiles:
    """The files directly in each folder of the sweep (an empty set for a folder without any), from one
    listing: on an object store, asking for each trial's files would cost a request per trial and file."""
    files: TrialFiles = {}
    for path, is_dir in storage.list_tree(sweep_dir):
        parts = path.split("/")
        if len(parts) > 1 or is_dir:
            names = files.setdefault(parts[0], set())
            if len(parts) == 2 and not is_dir:
                names.add(parts[1])
    return files


def is_completed(files: TrialFiles, trial: str) -> bool:
    return RESULT_FILE in files.get(trial, ())


def record_error(trial_dir: str, error: BaseException) -> None:
    """Append this attempt's traceback; the last line of each block is the error line `status` shows."""
    text = "".join(traceback.format_exception(error)).rstrip()
    path = storage.join(trial_dir, ERROR_FILE)
    # rewritten whole: an object store cannot append to a file
    storage.write_text(path, (storage.read_text(path) or "")
                       + f"--- attempt failed at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n{text}\n")


def error_lines(trial_dir: str) -> list[str]:
    """The final line of each failed attempt's traceback."""
    text = storage.read_text(storage.join(trial_dir, ERROR_FILE))
    if text is None:
        return []
    blocks = text.split("--- attempt failed at ")
    return [block.strip().splitlines()[-1] for block in blocks if block.strip()]


def write_driver_file(sweep_dir: str) -> None:
    write_json(storage.join(sweep_dir, DRIVER_FILE), {"pid": os.getpid(), "host": socket.gethostname(),
                                                      "started": time.strftime("%Y-%m-%dT%H:%M:%S")})


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
    return "error" if ERROR_FILE in files[trial] else "interrupted"


def sweep_status(sweep_dir: str, trials: list[tuple[str, str]]) -> dict[str, Any]:
    """Counts by state (overall and per stage) and the failing trials with their error lines.

    `trials` is (stage, trial name) for every planned trial.
    """
    running = driver_alive(sweep_dir)
    files = trial_files(sweep_dir)
    states = {name: trial_state(files, name, running) for _, name in trials}
    by_stage: dict[str, Counter] = {}
    for stage, name in trials:
        by_stage.setdefault(stage, Counter())[states[name]] += 1
    failing = [{"trial": name, "state": states[name], "errors": error_lines(storage.join(sweep_dir, name))}
               for _, name in trials if ERROR_FILE in files.get(name, ()) and states[name] != "completed"]
    return {
        "sweep_dir": sweep_dir,
        "driver_running": running,
        "total_trials": len(trials),
        "counts": {state: sum(s == state for s in states.values()) for state in STATES},
        "by_stage": {stage: {state: counts[state] for state in STATES if counts[state]}
                     for stage, counts in by_stage.items()},
        "failing": failing,
    }
