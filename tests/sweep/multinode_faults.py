"""Run by test_faults.py in a process of its own (it owns a multi-node Ray cluster): a head that takes no
trial and three 2-CPU worker nodes, each its own raylet. `imlsweep sweep run --address` runs a sweep of
a real tiny Ray Train trial that checkpoints every step; once it has a registered checkpoint,
the node its training worker runs on is removed without warning. Prints a JSON summary when the sweep ends.

    python multinode_faults.py SPEC LOG
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import ray
from ray._private import state
from ray.cluster_utils import Cluster

SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's list of the checkpoints it has registered


def training_with_checkpoint(sweep_dir: Path) -> list[str]:
    if not sweep_dir.is_dir():
        return []
    # a checkpoint folder exists before Ray Train has registered it; its snapshot file says it has, and only a
    # registered checkpoint is what a restarted worker resumes from
    return [trial.name for trial in sweep_dir.iterdir()
            if trial.is_dir() and any(trial.glob("checkpoint_*")) and (trial / SNAPSHOT).exists()
            and not (trial / "trial_result.json").exists()]


def train_worker_nodes() -> set[str]:
    return {info["Address"]["NodeID"] for info in state.actors().values()
            if info["ActorClassName"] == "RayTrainWorker" and info["State"] == "ALIVE"}


def main(spec: str, log_path: str) -> None:
    sweep_dir = Path(json.loads(Path(spec).read_text())["storage"]) / json.loads(Path(spec).read_text())["name"]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=2) for _ in range(3)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    summary: dict = {}
    with open(log_path, "w") as log:
        driver = subprocess.Popen([sys.executable, "-m", "imlsweep.cli", "sweep", "run", spec, "--address",
                                   cluster.address, "--json"], stdout=subprocess.PIPE, stderr=log, text=True)
        deadline = time.monotonic() + 300
        while not (training := training_with_checkpoint(sweep_dir)) or not train_worker_nodes():
            if driver.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"no trial was training with a checkpoint (driver exit {driver.poll()})")
            time.sleep(0.2)
        (victim,) = [node for node in nodes if node.node_id in train_worker_nodes()]
        cluster.remove_node(victim, allow_graceful=False)
        summary["training_when_removed"] = training
        stdout, _ = driver.communicate(timeout=420)
        summary["returncode"] = driver.returncode
        summary["status"] = json.loads(stdout) if driver.returncode in (0, 1) and stdout.strip() else None
    ray.shutdown()
    cluster.shutdown()
    print(json.dumps(summary))


if __name__ == "__main__":
    main(*sys.argv[1:])
