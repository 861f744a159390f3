"""`imlsweep bench sweep --quick`: the platform and the one-process-per-trial baseline run the same
trials and the command prints its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # a sweep and its baseline, in a subprocess


def test_bench_sweep_quick_prints_json(tmp_path):
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    completed = subprocess.run([sys.executable, "-m", "imlsweep.cli", "bench", "sweep", "--quick", "--json",
                                "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=420, env=env,
                               start_new_session=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout)
    assert result["trials"] == 2
    assert result["platform_wall_s"] > 0 and result["per_process_wall_s"] > 0
    # the printed times are rounded, the speedup is computed before rounding
    assert abs(result["speedup"] - result["per_process_wall_s"] / result["platform_wall_s"]) < 0.01
    assert 0 <= result["trial_overhead_s"] < result["platform_wall_s"]
    # the same trials ran both ways: one trial directory each, each with its training metrics
    for side in ("platform/bench_sweep", "per_process"):
        assert len(list((tmp_path / side).glob("*/metrics.jsonl"))) == 2, side
