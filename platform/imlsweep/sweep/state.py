"""Where a sweep stands, read from its directory alone (so `status` and `resume` work after a crash).

A trial directory gets `trial_result.json` when the trial finished (the only proof of completion)
and `trial_error.txt` with one block per failed attempt. The driver writes `driver.json` with its
pid while it runs. A trial with a directory but neither file was cut off (or is running).
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

RESULT_FILE = "trial_result.json"
ERROR_FILE = "trial_error.txt"
DRIVER_FILE = "driver.json"
STATES = ("completed", "running", "interrupted", "error", "pending")


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def is_completed(sweep_dir: Path, trial: str) -> bool:
    return (sweep_dir / trial / RESULT_FILE).is_file()


def read_result(sweep_dir: Path, trial: str) -> dict[str, Any] | None:
    path = sweep_dir / trial / RESULT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def record_error(trial_dir: Path, error: BaseException) -> None:
    """Append this attempt's traceback; the last line of each block is the error line `status` shows."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(traceback.format_exception(error)).rstrip()
    with open(trial_dir / ERROR_FILE, "a", encoding="utf-8") as handle:
        handle.write(f"--- attempt failed at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n{text}\n")


def error_lines(trial_dir: Path) -> list[str]:
    """The final line of each failed attempt's traceback."""
    path = trial_dir / ERROR_FILE
    if not path.is_file():
        return []
    blocks = path.read_text(encoding="utf-8").split("--- attempt failed at ")
    return [block.strip().splitlines()[-1] for block in blocks if block.strip()]


def write_driver_file(sweep_dir: Path) -> None:
    write_json_atomic(sweep_dir / DRIVER_FILE, {"pid": os.getpid(), "host": socket.gethostname(),
                                               "started": time.strftime("%Y-%m-%dT%H:%M:%S")})


def clear_driver_file(sweep_dir: Path) -> None:
    (sweep_dir / DRIVER_FILE).unlink(missing_ok=True)


def driver_alive(sweep_dir: Path) -> bool:
    path = sweep_dir / DRIVER_FILE
    if not path.is_file():
        return False
    info = json.loads(path.read_text(encoding="utf-8"))
    if info.get("host") != socket.gethostname():
        return True  # cannot check another machine's process: assume it runs
    try:
        os.kill(int(info["pid"]), 0)
    except (ProcessLookupError, PermissionError, ValueError):
        return False
    return True


def trial_state(sweep_dir: Path, trial: str, driver_running: bool) -> str:
    trial_dir = sweep_dir / trial
    if (trial_dir / RESULT_FILE).is_file():
        return "completed"
    if not trial_dir.is_dir():
        return "pending"
    if driver_running:
        return "running"
    return "error" if (trial_dir / ERROR_FILE).is_file() else "interrupted"


def sweep_status(sweep_dir: Path, trials: list[tuple[str, str]]) -> dict[str, Any]:
    """Counts by state (overall and per stage) and the failing trials with their error lines.

    `trials` is (stage, trial name) for every planned trial.
    """
    running = driver_alive(sweep_dir)
    states = {name: trial_state(sweep_dir, name, running) for _, name in trials}
    by_stage: dict[str, Counter] = {}
    for stage, name in trials:
        by_stage.setdefault(stage, Counter())[states[name]] += 1
    failing = [{"trial": name, "state": states[name], "errors": error_lines(sweep_dir / name)}
               for _, name in trials if (sweep_dir / name / ERROR_FILE).is_file() and states[name] != "completed"]
    return {
        "sweep_dir": str(sweep_dir),
        "driver_running": running,
        "total_trials": len(trials),
        "counts": {state: sum(s == state for s in states.values()) for state in STATES},
        "by_stage": {stage: {state: counts[state] for state in STATES if counts[state]}
                     for stage, counts in by_stage.items()},
        "failing": failing,
    }
