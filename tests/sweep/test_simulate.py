"""`sweep simulate`: the real driver and Tune scheduling on a local multi-node Ray cluster with declared
GPUs, trials replaced by runners that hold their resources for their estimated time (scaled down)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imlsweep.sweep.simulate import lower_bound
from imlsweep.sweep.sweep import open_spec

pytestmark = pytest.mark.slow  # a multi-node Ray cluster, in a subprocess

SWEEPS = Path(__file__).parents[2] / "sweeps"
OPT_IML_SPECS = ["eps_mixing_rate", "benchmark_proportions", "task_scaling", "category_scaling", "addon_fractions",
                 "demonstrations", "lr_batch"]


def simulate(*args: str, timeout: int = 540) -> tuple[object, str]:
    result = subprocess.run([sys.executable, "-m", "imlsweep.cli", "sweep", "simulate", *args, "--json"],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout), result.stderr


def test_the_961_grid_on_128_gpus():
    """8 nodes of 16 GPUs: the 16 x 8 cluster's GPUs and trial slots with fewer raylets on a 2-core machine."""
    figures, log = simulate(str(SWEEPS / "stl_mtl_sample_efficiency.yaml"), "--nodes", "8", "--gpus-per-node", "16",
                            "--time-scale", "1e-5")
    assert figures["trials"] == figures["trials_ran"] == figures["trials_started"] == 961  # each once
    assert figures["gpus_per_trial"] == 8 and figures["nodes"] == 8
    for key in ("makespan_s", "lower_bound_s", "gpu_utilization", "driver_overhead_per_trial_s"):
        assert figures[key] > 0, key
    assert figures["makespan_s"] >= figures["lower_bound_s"] * 0.99  # no schedule beats the bound
    assert 0 < figures["gpu_utilization"] <= 1.01
    sweep = open_spec(SWEEPS / "stl_mtl_sample_efficiency.yaml")
    assert figures["lower_bound_s"] == pytest.approx(lower_bound(sweep, 128)["lower_bound_s"])
    # single-task trials that start from the prefinetuned model wait for it
    assert log.index("completed prefinetune-f_m1") < log.index("start single_task-plain_100-")


def test_every_shipped_opt_iml_sweep_in_one_command():
    figures, _ = simulate(*(str(SWEEPS / f"{name}.yaml") for name in OPT_IML_SPECS), "--nodes", "4",
                          "--gpus-per-node", "8", "--time-scale", "1e-6")
    assert [run["sweep"] for run in figures] == OPT_IML_SPECS
    for run in figures:
        assert run["trials"] == run["trials_ran"] == run["trials_started"] > 0, run["sweep"]
