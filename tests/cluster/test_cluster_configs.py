"""The cluster YAMLs, checked with Ray's own cluster-config validation and KubeRay's config translation."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.runtime_env import RuntimeEnv

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
LAUNCHER_CONFIGS = ("aws.yaml", "gcp.yaml")


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def is_spot(node_config: dict) -> bool:
    aws = node_config.get("InstanceMarketOptions", {}).get("MarketType") == "spot"
    gcp = node_config.get("scheduling", {}).get("provisioningModel") == "SPOT"
    return aws or gcp


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_passes_rays_validation(name):
    config = prepare_config(load(name))  # merges the provider's defaults, as `ray up` does
    validate_config(config)
    assert config["idle_timeout_minutes"] > 0


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_cpu_head_on_demand_and_autoscaling_spot_gpu_workers(name):
    config = load(name)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"]["CPU"] == 0  # the driver runs there, trials never do
    assert not is_spot(head["node_config"]) and head["labels"]["market"] == "on-demand"
    workers = {key: value for key, value in types.items() if key != config["head_node_type"]}
    gpus = sorted(worker["resources"]["GPU"] for worker in workers.values())
    assert gpus[0] == 1 and gpus[-1] == 8  # single-GPU nodes for single-task trials, 8-GPU nodes
    for worker in workers.values():
        assert worker["min_workers"] == 0 and worker["max_workers"] > 0
        assert is_spot(worker["node_config"]) and worker["labels"]["market"] == "spot"


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_nodes_install_the_package_from_the_checkout(name):
    config = load(name)
    assert config["file_mounts"]["~/imlsweep"] == "."
    assert {".venv", ".git", "runs"} <= set(config["rsync_exclude"])
    assert any(re.search(r"pip install .*-c ~/imlsweep/constraints.txt -e ~/imlsweep", c) for c in config["setup_commands"])
    # The sweep directory lives on storage every node mounts (on the host, then into the container).
    assert any("/mnt/imlsweep" in c and "mount" in c for c in config["initialization_commands"])
    assert "-v /mnt/imlsweep:/mnt/imlsweep" in config["docker"]["run_options"]
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start  # dashboard and job server on loopback


def test_rays_validation_rejects_a_misspelt_key():
    config = load("aws.yaml")
    config["available_node_types"]["gpu_1x_spot"]["min_worker"] = 0
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        validate_config(prepare_config(config))


def test_kuberay_cluster_translates_to_a_valid_autoscaler_config():
    cluster = load("kuberay/raycluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    # What KubeRay's autoscaler does with the CR: derive the autoscaling config and validate it.
    config = _derive_autoscaling_config_from_ray_cr(cluster)
    types = config["available_node_types"]
    assert types["headgroup"]["resources"]["CPU"] == 0
    assert config["idle_timeout_minutes"] == spec["autoscalerOptions"]["idleTimeoutSeconds"] / 60
    workers = {name: t for name, t in types.items() if name != "headgroup"}
    assert sorted(t["resources"]["GPU"] for t in workers.values()) == [1, 8]
    assert all(t["min_workers"] == 0 for t in workers.values())
    for group in [spec["headGroupSpec"]] + spec["workerGroupSpecs"]:
        containers = group["template"]["spec"]["containers"]
        assert containers and all(c.get("name") and c.get("image") for c in containers)
        assert isinstance(group.get("rayStartParams"), dict)
        volumes = {v["name"]: v for v in group["template"]["spec"]["volumes"]}
        for container in containers:  # the W&B key: a netrc file from the Secret, NETRC pointing to it
            env = {e["name"]: e for e in container.get("env", [])}
            assert "WANDB_API_KEY" not in env
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            assert env["NETRC"]["value"] == f"{mounts['credentials']}/netrc"
            secret = volumes["credentials"]["secret"]
            assert secret["secretName"] == "wandb-netrc" and secret["optional"] is True
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_kuberay_job_runs_a_sweep_on_that_cluster():
    job, cluster = load("kuberay/rayjob.yaml"), load("kuberay/raycluster.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    assert spec["submissionMode"] in {"K8sJobMode", "HTTPMode", "SidecarMode"}
    RuntimeEnv(**yaml.safe_load(spec["runtimeEnvYAML"]))
    sweep = re.search(r"imlsweep sweep run (\S+) --storage (\S+)", spec["entrypoint"])
    assert sweep and (REPO / sweep.group(1)).is_file()
    # Every pod of the cluster mounts the storage the sweep writes to.
    groups = [cluster["spec"]["headGroupSpec"]] + cluster["spec"]["workerGroupSpecs"]
    for group in groups:
        mounts = {m["mountPath"] for c in group["template"]["spec"]["containers"] for m in c.get("volumeMounts", [])}
        assert sweep.group(2) in mounts


def test_runtime_env_is_valid_and_leaves_local_state_behind():
    runtime_env = RuntimeEnv(**load("runtime_env.yaml"))
    assert {".venv/", ".git/", "runs/"} <= set(runtime_env["excludes"])
    assert "WANDB_API_KEY" not in runtime_env.get("env_vars", {})


def test_no_secret_is_written_in_the_cluster_files():
    for path in CLUSTER.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"WANDB_API_KEY\s*[:=]\s*['\"]?[0-9a-f]{20,}", text), path
            assert not re.search(r"\b[0-9a-f]{40}\b", text), path  # the shape of a W&B key


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_nodes_get_w_and_b_credentials_as_a_netrc_file(name):
    """The local credentials folder goes to every node; the Ray processes started there (and so every job's
    driver and trials) have NETRC pointing to the netrc file in it."""
    config = load(name)
    folder = "~/.config/imlsweep/credentials"
    assert config["file_mounts"][folder] == folder
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        start = next(c for c in commands if "ray start" in c)
        assert start.index("export NETRC=$HOME/.config/imlsweep/credentials/netrc;") < start.index("ray start")


@pytest.mark.slow  # runs the script
def test_submit_script_leaves_the_key_out_of_the_job(tmp_path):
    """cluster/submit.sh with a `ray` on PATH that records its arguments instead of submitting."""
    recorder = tmp_path / "ray"
    recorder.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$RECORD"\n')
    recorder.chmod(0o755)
    python_dir = Path(os.sys.executable).parent
    env = {"PATH": f"{tmp_path}:{python_dir}:/usr/bin:/bin", "RECORD": str(tmp_path / "args"),
           "WANDB_API_KEY": "k" * 40, "PYTHON": os.sys.executable}
    submit = subprocess.run([str(CLUSTER / "submit.sh"), "--no-wait", "--", "imlsweep", "sweep", "run", "x.yaml"],
                            env=env, check=True, cwd=tmp_path, capture_output=True, text=True)
    args = (tmp_path / "args").read_text().splitlines()
    assert args[:4] == ["job", "submit", "--address", "http://127.0.0.1:8265"]
    assert args[args.index("--working-dir") + 1] == "."
    assert args[args.index("--runtime-env") + 1] == "cluster/runtime_env.yaml"  # run from the repository root
    assert "WANDB_API_KEY" not in load("runtime_env.yaml").get("env_vars", {})
    assert not any("k" * 40 in arg for arg in args)
    assert "WANDB_API_KEY is not sent with the job" in submit.stderr and "k" * 40 not in submit.stderr
    assert args[-5:] == ["--", "imlsweep", "sweep", "run", "x.yaml"]
