"""Storage on s3://, against a real S3 API (moto's server on 127.0.0.1, reached through pyarrow as AWS is).

The storage helpers, each on a local folder and in the bucket; then a real two-stage sweep with
`storage: s3://...`: its second stage starts from the first stage's weights in the bucket, and
`resume`, `status` and `report` work from the sweep's URI alone, as on a new head node."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest
import yaml
from processes import kill_session

from imlsweep import storage
from imlsweep.sweep.state import trial_files
from imlsweep.trial_dir import TrialDir

SPEC = Path(__file__).parent / "specs" / "two_stage.yaml"
IMLSWEEP = [sys.executable, "-m", "imlsweep.cli"]
BUCKET = "imlsweep-test"
TRIALS = ("pre-inst", "ft-inst-samples_per_task=16")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_env():
    """A moto S3 server with an empty bucket; the variables that point pyarrow (here and in the driver's
    subprocesses, which inherit them) at it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], allow_bucket_creation=True).create_dir(BUCKET)
        yield env
    server.stop()


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    """A fresh storage location: a local folder, or a prefix in the bucket."""
    if request.param == "local":
        return str(tmp_path)
    request.getfixturevalue("s3_env")
    return f"s3://{BUCKET}/{request.node.name.replace('[', '-').rstrip(']')}"


def test_whole_files_are_written_and_read(root):
    uri = storage.join(root, "a", "b.bin")
    assert storage.read_bytes(uri) is None and storage.read_text(uri) is None
    storage.write_bytes(uri, b"first")
    storage.write_text(uri, "second")
    assert storage.read_bytes(uri) == b"second"
    assert sorted(storage.list_tree(root)) == [("a", True), ("a/b.bin", False)]  # no temporary file left beside


def test_folders_are_listed_copied_and_deleted(root, tmp_path):
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "f.txt").write_text("f")
    (source / "g.txt").write_text("g")
    folder = storage.join(root, "model")
    storage.upload_dir(str(source), folder)
    assert storage.is_dir(folder) and not storage.is_dir(storage.join(folder, "g.txt"))
    assert sorted(storage.list_tree(folder)) == [("g.txt", False), ("sub", True), ("sub/f.txt", False)]
    copy = tmp_path / "copy"
    storage.download_dir(folder, str(copy))
    assert (copy / "sub" / "f.txt").read_text() == "f" and (copy / "g.txt").read_text() == "g"
    storage.delete(storage.join(folder, "g.txt"))
    assert storage.read_text(storage.join(folder, "g.txt")) is None
    storage.delete(folder)
    storage.delete(folder)  # gone already: nothing happens
    assert not storage.is_dir(folder) and storage.list_tree(folder) == []


def test_trial_state_files(root):
    """Error blocks accumulate (an object store cannot append); one listing gives each trial's files."""
    trial = TrialDir(storage.join(root, "sweep", "trial-a"))
    for attempt in ("first", "second"):
        try:
            raise RuntimeError(f"{attempt} attempt")
        except RuntimeError as error:
            trial.record_error(error)
    assert trial.error_lines() == ["RuntimeError: first attempt", "RuntimeError: second attempt"]
    storage.write_text(trial.file("checkpoint_000002/state.bin"), "x")
    storage.write_text(storage.join(root, "sweep", "trial-b", "checkpoint_000001", "state.bin"), "x")
    assert trial_files(storage.join(root, "sweep")) == {"trial-a": {"trial_error.txt"}, "trial-b": set()}


def driver_env(s3_env: dict[str, str], cache: Path) -> dict[str, str]:
    """The S3 variables for the driver and every Ray worker it starts; its own cache folder (Tune's
    state and other local files of a remote sweep), so a second cache stands for a new head node."""
    env = dict(os.environ, **s3_env, RAY_USAGE_STATS_ENABLED="0", TOKENIZERS_PARALLELISM="false",
               XDG_CACHE_HOME=str(cache), RAY_raylet_start_wait_time_s="120")
    env.pop("RAY_ADDRESS", None)
    return env


def imlsweep(args: list[str], env: dict[str, str], timeout_s: float = 240) -> subprocess.CompletedProcess:
    """Run the CLI in its own session; on a timeout, kill the session (the local Ray it started)."""
    process = subprocess.Popen(IMLSWEEP + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_session(process)
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def remote_sweep(s3_env, sample_corpus, tmp_path_factory):
    """Stage `pre` trains one model, stage `ft` fine-tunes it from its hf_model in the bucket. Trials run
    in-process (the default; Ray Train workers would double the time). Then `resume` from the URI with a
    fresh cache folder, as a new head node would."""
    root = tmp_path_factory.mktemp("remote")
    data = yaml.safe_load(SPEC.read_text())
    for stage in data["stages"]:
        stage["cells"] = stage["cells"][:1]
    data.update(corpus=str(sample_corpus), storage=f"s3://{BUCKET}/sweeps", tracking={"wandb": False})
    data["resources"]["in_process"] = True
    spec = root / "two_stage.yaml"
    spec.write_text(yaml.safe_dump(data))
    run = imlsweep(["sweep", "run", str(spec), "--json"], driver_env(s3_env, root / "cache"))
    assert run.returncode == 0, run.stderr[-3000:]
    uri = f"s3://{BUCKET}/sweeps/two_stage"
    results = {name: storage.read_text(storage.join(uri, name, "trial_result.json")) for name in TRIALS}
    resumed = imlsweep(["sweep", "resume", uri, "--json"], driver_env(s3_env, root / "new_head_cache"), timeout_s=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return uri, root, json.loads(run.stdout), results, resumed


@pytest.mark.slow  # a real sweep, in subprocesses
def test_sweep_files_are_in_the_bucket(remote_sweep):
    uri, root, status, _, _ = remote_sweep
    assert status["counts"]["completed"] == 2 == status["total_trials"]
    filesystem, path = pafs.FileSystem.from_uri(uri)
    assert isinstance(filesystem, pafs.S3FileSystem)
    with filesystem.open_input_stream(f"{path}/results.parquet") as stream:
        table = pd.read_parquet(io.BytesIO(stream.read()))
    assert set(table["trial"]) == set(TRIALS) and set(table["status"]) == {"completed"}
    assert table["score"].notna().all() and (table["train_tokens"] > 0).all()
    with filesystem.open_input_stream(f"{path}/sweep.yaml") as stream:
        assert yaml.safe_load(stream.read())["storage"] == f"s3://{BUCKET}/sweeps"
    names = {info.path[len(path) + 1:] for info in filesystem.get_file_info(pafs.FileSelector(path, recursive=True))}
    for trial in TRIALS:
        with filesystem.open_input_stream(f"{path}/{trial}/trial_result.json") as stream:
            assert json.loads(stream.read())["trial"] == trial
        assert {f"{trial}/trial.yaml", f"{trial}/metrics.jsonl", f"{trial}/metrics.json",
                f"{trial}/predictions.parquet"} <= names
    assert "pre-inst/hf_model/config.json" in names
    assert not (root / "sweeps").exists()  # nothing of the sweep went to a local folder
    assert (root / "cache" / "imlsweep" / "s3" / BUCKET / "sweeps" / "two_stage" / ".tune").is_dir()


@pytest.mark.slow  # a real sweep, in subprocesses
def test_second_stage_started_from_the_bucket(remote_sweep):
    uri = remote_sweep[0]
    trial = yaml.safe_load(storage.read_text(storage.join(uri, TRIALS[1], "trial.yaml")))
    assert trial["init_from"] == f"{uri}/pre-inst/hf_model"


@pytest.mark.slow  # a real sweep, in subprocesses
def test_resume_from_the_uri_runs_nothing_again(remote_sweep):
    uri, _, _, results, resumed = remote_sweep
    assert json.loads(resumed.stdout)["counts"]["completed"] == 2
    assert "2 trials, 2 done, 0 to run" in resumed.stderr and "pre 1/1, ft 1/1" in resumed.stderr
    for name, text in results.items():
        assert storage.read_text(storage.join(uri, name, "trial_result.json")) == text


@pytest.mark.slow  # a real sweep, in subprocesses
def test_status_and_report_from_the_uri(remote_sweep, s3_env, tmp_path):
    uri = remote_sweep[0]
    env = driver_env(s3_env, tmp_path / "cache")
    status = imlsweep(["sweep", "status", uri, "--json"], env, timeout_s=120)
    assert status.returncode == 0, status.stderr[-3000:]
    counts = json.loads(status.stdout)
    assert counts["counts"]["completed"] == 2 == counts["total_trials"] and not counts["driver_running"]
    assert counts["by_stage"] == {"pre": {"completed": 1}, "ft": {"completed": 1}}
    report = imlsweep(["report", uri, "--out", str(tmp_path / "report")], env, timeout_s=120)
    assert report.returncode == 0, report.stderr[-3000:]
    assert report.stdout == f"report: {tmp_path / 'report' / 'report.html'}\n"
    assert "2 of 2 trials" in (tmp_path / "report" / "report.html").read_text()
