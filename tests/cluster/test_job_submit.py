"""A sweep submitted with `ray job submit` to a real Ray head on loopback, then its report; the head's
node holds a W&B key in a netrc file (NETRC), and the key shows up in none of Ray's job table, the job's
logs, Ray's session files and the sweep directory.

The head is started with `ray start --head` with its dashboard and job server on 127.0.0.1, its own
temp dir, ports and token, so it cannot meet any other Ray instance on the machine. (Ray places its
GCS and raylet on the node's address whatever `--node-ip-address` says: it maps 127.0.0.1 to the
node's reachable IP; the HTTP endpoints follow `--dashboard-host`.) It is stopped by the process ids of what it
started (every process under its temp dir, and their children), never with `ray stop`, which would
end every Ray process on the machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pandas as pd
import psutil
import pytest

from imlsweep.report.build import build_report

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the virtual env: `ray` and `imlsweep` from it, explicitly
SPEC = Path(__file__).parent / "specs" / "job_submit.yaml"
JOB_TIMEOUT_S = 300  # a safety net: with the head's start (at most 180 s) it stays inside pytest's 600 s
pytestmark = pytest.mark.slow  # a real head, a real sweep


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def worker_port_range_start(ports: list[int], width: int = 201) -> int:
    """Where the head's worker ports (a range of `width`) start, clear of its other ports."""
    start = max(ports) + 1
    return start if start + width <= 65535 else min(ports) - width


def head_processes(temp_dir: str, session_id: int) -> list[psutil.Process]:
    """What the head started: processes naming its temp dir or in its session, and their children."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            mine = temp_dir in " ".join(proc.info["cmdline"] or []) or os.getsid(proc.pid) == session_id
            if mine and proc.pid != os.getpid():
                found[proc.pid] = proc
                found.update({child.pid: child for child in proc.children(recursive=True)})
        except (psutil.Error, ProcessLookupError):
            continue
    return list(found.values())


def stop_head(temp_dir: str, session_id: int) -> None:
    """SIGTERM, then SIGKILL what is left after a short grace (Ray's own shutdown gives a process 1 s): the GCS
    server and the autoscaler's monitor do not exit on SIGTERM and the raylet takes over 10 s to, so a longer
    grace only delays the kill."""
    processes = head_processes(temp_dir, session_id)
    for proc in processes:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=2)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


@pytest.fixture(scope="module")
def wandb_netrc(tmp_path_factory):
    """A W&B key (made here, so no file of the checkout the job uploads holds it) in a netrc file: the
    node's credentials, as the cluster YAMLs and the KubeRay manifest give them."""
    key = (uuid.uuid4().hex + uuid.uuid4().hex)[:40]
    path = tmp_path_factory.mktemp("credentials") / "netrc"
    path.write_text(f"machine api.wandb.ai\n  login user\n  password {key}\n")
    path.chmod(0o600)
    return {"path": path, "key": key}


@pytest.fixture(scope="module")
def ray_head(wandb_netrc):
    """A Ray head on 127.0.0.1: 4 CPUs, non-default ports, token authentication with its own token; NETRC
    points to the node's W&B credentials, as the cluster YAMLs' start commands do."""
    temp_dir = tempfile.mkdtemp(prefix="rayh-", dir="/tmp")  # short: Ray's unix sockets live under it
    ports = free_ports(9)
    (gcs, dashboard, client, node_manager, object_manager, agent_listen, agent_grpc, metrics,
     runtime_env_agent) = ports
    worker_low = worker_port_range_start(ports)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex,
           "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           "NETRC": str(wandb_netrc["path"])}
    env.pop("RAY_ADDRESS", None)
    command = [
        str(BIN / "ray"), "start", "--head", f"--port={gcs}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--include-dashboard=true",
        f"--ray-client-server-port={client}", f"--node-manager-port={node_manager}",
        f"--object-manager-port={object_manager}", f"--dashboard-agent-listen-port={agent_listen}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env_agent}",
        f"--min-worker-port={worker_low}", f"--max-worker-port={worker_low + 200}",
        "--num-cpus=4", f"--temp-dir={temp_dir}", "--disable-usage-stats",
    ]
    starter = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = starter.communicate(timeout=120)
        assert starter.returncode == 0, output
        yield {"address": f"http://127.0.0.1:{dashboard}", "env": env, "temp_dir": temp_dir}
    finally:
        stop_head(temp_dir, starter.pid)
        shutil.rmtree(temp_dir, ignore_errors=True)


def ray_job(head: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), "job", *args, "--address", head["address"]], env=head["env"],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def submitted_sweep(ray_head, wandb_netrc, tmp_path_factory):
    """The miniature quickstart, submitted through cluster/submit.sh (checkout as working dir) from a shell
    that also has the key in WANDB_API_KEY, which the script must leave out of the job."""
    storage = tmp_path_factory.mktemp("storage")
    submission = f"imlsweep-{uuid.uuid4().hex[:8]}"
    env = {**ray_head["env"], "RAY_ADDRESS": ray_head["address"], "PYTHON": sys.executable,
           "WANDB_API_KEY": wandb_netrc["key"]}
    submit = subprocess.run(
        [str(REPO / "cluster" / "submit.sh"), "--no-wait", "--submission-id", submission, "--",
         str(BIN / "imlsweep"), "sweep", "run", str(SPEC), "--storage", str(storage), "--json"],
        env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert submit.returncode == 0, submit.stdout + submit.stderr
    try:
        ray_job(ray_head, "logs", "--follow", submission, timeout=JOB_TIMEOUT_S)  # returns when the job ends
        status = ray_job(ray_head, "status", submission).stdout
    except subprocess.TimeoutExpired:
        status = f"still running after {JOB_TIMEOUT_S} s"
        ray_job(ray_head, "stop", submission, timeout=120)
    logs = ray_job(ray_head, "logs", submission).stdout
    return {"status": status, "logs": logs, "sweep_dir": storage / "job_submit", "submit_stderr": submit.stderr,
            "submission": submission,
            "job_list": ray_job(ray_head, "list").stdout}


def test_submitted_sweep_succeeds_with_results(submitted_sweep):
    assert re.search(r"Job '[\w-]+' succeeded", submitted_sweep["status"]), (
        submitted_sweep["status"][-500:] + submitted_sweep["logs"][-4000:])
    final = json.loads(submitted_sweep["logs"].strip().splitlines()[-1])  # `sweep run --json` status
    assert final["counts"]["completed"] == final["total_trials"] == 2
    results = pd.read_parquet(submitted_sweep["sweep_dir"] / "results.parquet")
    assert set(results["trial"]) == {"multi_task-inst_8", "multi_task-plain_8"}
    assert (results["status"] == "completed").all() and results["score"].notna().all()
    assert set(results["task_id"]) == {"task1159_bard_analogical_reasoning_containers",
                                       "task828_copa_commonsense_cause_effect"}


def files_holding(folder: Path, text: str) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file() and text.encode() in path.read_bytes()]


def test_the_wandb_key_is_in_no_job_record_log_session_file_or_sweep_file(submitted_sweep, ray_head, wandb_netrc):
    key = wandb_netrc["key"]
    assert submitted_sweep["submission"] in submitted_sweep["job_list"]  # the job table, runtime_env included
    assert key not in submitted_sweep["job_list"]
    assert key not in submitted_sweep["logs"] and key not in submitted_sweep["submit_stderr"]
    assert files_holding(Path(ray_head["temp_dir"]), key) == []  # Ray's session files: GCS, logs, runtime envs
    assert files_holding(submitted_sweep["sweep_dir"], key) == []


def test_the_sweep_says_once_where_the_nodes_w_and_b_credentials_come_from(submitted_sweep, wandb_netrc):
    line = f"credentials from netrc file {wandb_netrc['path']} (machine api.wandb.ai)"
    assert submitted_sweep["logs"].count(line) == 1
    assert "WANDB_API_KEY is not sent with the job" in submitted_sweep["submit_stderr"]


def test_report_of_the_submitted_sweep(submitted_sweep, tmp_path):
    paths = build_report(submitted_sweep["sweep_dir"], tmp_path)
    page = paths.html.read_text()
    assert "2 of 2 trials" in page and "Sample efficiency" in page
    assert {p.name for p in paths.figures} == {"sample_efficiency.png", "sample_efficiency_by_category.png"}


def test_dashboard_and_job_server_listen_on_loopback_only(ray_head):
    port = int(ray_head["address"].rsplit(":", 1)[1])
    listeners = [c for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port]
    assert listeners and all(c.laddr.ip == "127.0.0.1" for c in listeners)
