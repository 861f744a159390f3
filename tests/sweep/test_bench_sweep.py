"""`imlsweep bench sweep`: the overhead arithmetic, and with `--quick` the platform and the baseline (a
TorchTrainer per Tune trial) running the same trials, each with its own token cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from imlsweep.bench.sweep import comparison, overhead_per_trial
from imlsweep.data.token_cache import ENTRY_SUFFIX


def test_overhead_per_trial_counts_every_slot_for_the_whole_run():
    # 2 slots for 30 s = 60 slot-seconds, 36 of them training: 24 s of overhead over 12 trials
    assert overhead_per_trial(wall_s=30.0, concurrency=2, train_s=36.0, trials=12) == 2.0
    figures = comparison(12, 2, {"wall_s": 30.0, "train_s": 36.0, "trial_overhead_s": 1.234},
                         {"wall_s": 120.0, "train_s": 40.0})
    assert figures == {"trials": 12, "concurrency": 2, "platform_wall_s": 30.0, "overhead_per_trial_s": 2.0,
                       "trial_overhead_s": 1.23, "baseline_wall_s": 120.0, "speedup": 4.0,
                       "baseline_overhead_per_trial_s": 16.67}
    assert "speedup" not in comparison(12, 2, {"wall_s": 30.0, "train_s": 36.0, "trial_overhead_s": 1.0}, None)


@pytest.mark.slow  # a sweep and its baseline, in subprocesses
def test_bench_sweep_quick_prints_json(tmp_path, sample_corpus):
    shutil.copytree(sample_corpus, tmp_path / "corpus")  # the bench builds this same corpus where it finds none
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    completed = subprocess.run([sys.executable, "-m", "imlsweep.cli", "bench", "sweep", "--quick", "--json",
                                "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=420, env=env,
                               start_new_session=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout)
    assert result["trials"] == 1
    assert result["platform_wall_s"] > 0 and result["baseline_wall_s"] > 0
    # the printed times are rounded, the speedup is computed before rounding
    assert abs(result["speedup"] - result["baseline_wall_s"] / result["platform_wall_s"]) < 0.01
    assert 0 <= result["trial_overhead_s"] < result["platform_wall_s"]
    assert "--simulate" in result["simulated_grid"]
    # the same trials ran both ways: one trial directory each, each with its training metrics
    for side in ("platform/bench_sweep", "baseline"):
        assert len(list((tmp_path / side).glob("*/metrics.jsonl"))) == 1, side
    # each side tokenized its data into its own cache; the baseline's trials were Tune trials
    for side in ("platform", "baseline"):
        assert list((tmp_path / f"{side}-token-cache").rglob("*" + ENTRY_SUFFIX)), side
    assert len(list((tmp_path / "baseline" / ".tune" / "baseline").glob("train_driver_*"))) == 1
