"""`sweep simulate`: the real driver and Tune scheduling on a local multi-node Ray cluster with declared
GPUs, trials replaced by runners that hold their resources for their estimated time (scaled down).

Two shipped OPT-IML sweeps run here, in one command (the others have the same shape: one stage, no
dependencies, and each costs Tune about a second per trial on two cores; every OPT-IML sweep
runs for real in miniature in test_opt_iml_miniature.py). The 961-model grid takes about five minutes,
too long for the suite: its queue is tested without Ray in tests/sweep/test_queue.py, and the README's
benchmark table gives its simulated figures with the command that prints them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


pytestmark = pytest.mark.slow  # a multi-node Ray cluster, in a subprocess

SWEEPS = Path(__file__).parents[2] / "sweeps"
OPT_IML_SPECS = ["task_scaling", "demonstrations"]


def simulate(*args: str, timeout: int = 540) -> tuple[object, str]:
    result = subprocess.run([sys.executable, "-m", "imlsweep.cli", "sweep", "simulate", *args, "--json"],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout), result.stderr


def test_shipped_opt_iml_sweeps_in_one_command():
    """Each trial ran once, on 4 nodes of 8 GPUs; the figures are consistent with their bound."""
    figures, _ = simulate(*(str(SWEEPS / f"{name}.yaml") for name in OPT_IML_SPECS), "--nodes", "4",
                          "--gpus-per-node", "8", "--time-scale", "1e-6")
    assert [run["sweep"] for run in figures] == OPT_IML_SPECS
    for run in figures:
        assert run["trials"] == run["trials_ran"] == run["trials_started"] > 0, run["sweep"]
        assert run["makespan_s"] >= run["lower_bound_s"] * 0.99, run["sweep"]  # no schedule beats the bound
        assert 0 < run["gpu_utilization"] <= 1.01 and run["driver_overhead_per_trial_s"] > 0, run["sweep"]
