"""A worker node removed while a trial trains on it, on a local cluster of a head and three worker nodes
(separate raylets): the trial reruns on another node from its last checkpoint, and every trial of the sweep
ends with exactly one result. The cluster lives in its own process (multinode_faults.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # a multi-node Ray cluster and a real sweep, in subprocesses

SCRIPT = Path(__file__).parent / "multinode_faults.py"
TASK = "task828_copa_commonsense_cause_effect"


@pytest.fixture(scope="module")
def node_lost(sample_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    spec = {
        "name": "faults", "corpus": str(sample_corpus), "storage": str(root / "sweeps"),
        "base": {"model": {"name": "tiny-llama"},
                 "mixture": {"tasks": [TASK], "samples_per_task": 32, "encoding": {"name": "superni_def_pos"},
                             "max_length": 256},
                 "train": {"lr": 1e-3, "schedule": "constant", "warmup_steps": 0, "max_steps": 8, "micro_batch_size": 2,
                           "precision": "fp32", "zero_stage": 0, "log_every": 1, "checkpoint_every": 1,
                           "worker_restarts": 2},
                 "eval": {"split": "test", "max_per_task": 2, "mode": "generation", "max_new_tokens": 2}},
        "resources": {"workers": 1, "cpus_per_worker": 1, "in_process": False},
        "concurrency": 1,  # one trial trains at a time: the removed node is that trial's
        "trial_retries": 2,
        "tracking": {"wandb": False},
        "stages": [{"name": "lr", "axes": {"train.lr": [1e-3]}}],
    }
    path = root / "faults.yaml"
    path.write_text(json.dumps(spec))
    result = subprocess.run([sys.executable, str(SCRIPT), str(path), str(root / "driver.log")],
                            capture_output=True, text=True, timeout=560)
    log = (root / "driver.log").read_text() if (root / "driver.log").exists() else ""
    assert result.returncode == 0, result.stderr[-3000:] + log[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), root / "sweeps" / "faults", log


def test_every_trial_ends_with_one_result(node_lost):
    summary, sweep_dir, log = node_lost
    assert summary["returncode"] == 0, log[-3000:]
    assert summary["status"]["counts"]["completed"] == 1 == summary["status"]["total_trials"]
    table = pd.read_parquet(sweep_dir / "results.parquet")
    assert table["trial"].nunique() == 1 and not table.duplicated(["trial", "task_id", "shots"]).any()
    assert len(list(sweep_dir.glob("*/trial_result.json"))) == 1


def test_the_trial_on_the_lost_node_resumed_from_its_checkpoint(node_lost):
    summary, sweep_dir, _ = node_lost
    (trial,) = summary["training_when_removed"]
    result = json.loads((sweep_dir / trial / "trial_result.json").read_text())
    assert result["metrics"]["resumed_from_step"] >= 1 and result["metrics"]["step"] == 8
    steps = [json.loads(line)["step"] for line in (sweep_dir / trial / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 8  # no step logged twice, none lost after the resume
