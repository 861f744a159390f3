"""Shared fixtures: one local Ray instance per test session, no network, W&B offline and without credentials; and the two lanes.

`make test-fast` runs the tests not marked `slow`. A test that uses the session's Ray instance is marked
slow here; a test that starts a subprocess or a DeepSpeed engine says so itself. An unmarked test that
starts Ray or a subprocess fails, so the fast lane cannot quietly grow slow.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Before anything imports Ray, transformers or wandb.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Ray Train's controller polls its workers every 2 s by default, and each poll takes at most one report per
# worker (a worker's report waits while the last one is unread): a trial that reports every step would
# train at one step per 2 s. Polled every 0.2 s here, by the session's Ray and by every Ray a test's
# subprocess starts (they inherit this environment). Nothing else about the trials changes.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ["WANDB_MODE"] = "offline"
os.environ.pop("WANDB_API_KEY", None)
os.environ["NETRC"] = "/dev/null"  # never a developer's own W&B login (~/.netrc)

from imlsweep.assets import SUPERNI_SAMPLE_DIR  # noqa: E402


def pytest_collection_modifyitems(items):
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def fast_tests_stay_fast(request, monkeypatch):
    if request.node.get_closest_marker("slow") is not None:
        yield
        return

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} starts a subprocess: mark it slow")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)
    ray_was_running = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    yield
    if not ray_was_running and "ray" in sys.modules and sys.modules["ray"].is_initialized():
        pytest.fail(f"{request.node.nodeid} starts Ray: use the `ray_local` fixture (slow lane)")


@pytest.fixture(scope="session")
def superni_dir():
    """The bundled, real SuperNI sample in the allenai/natural-instructions layout (read-only)."""
    return SUPERNI_SAMPLE_DIR


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance shared by the whole session. Logical CPUs exceed the 2 real cores so a
    Tune trial (1 CPU) can hold two Ray Train workers (1 CPU each)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "offline"}})
    yield ray
    ray.shutdown()


REPO_DIR = __import__("pathlib").Path(__file__).resolve().parent.parent
SAMPLE_CORPUS_CONFIG = REPO_DIR / "sweeps" / "corpora" / "superni_sample.yaml"


@pytest.fixture(scope="session")
def sample_corpus_config():
    """sweeps/corpora/superni_sample.yaml: the corpus config of the bundled sample."""
    return SAMPLE_CORPUS_CONFIG


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory):
    """The bundled SuperNI sample built once per session with sweeps/corpora/superni_sample.yaml
    (small per-task test/validation sizes, so held-out tasks keep a training pool)."""
    from imlsweep.corpus.build import build_corpus
    from imlsweep.corpus.config import load_corpus_config

    out = tmp_path_factory.mktemp("corpus") / "superni_sample"
    build_corpus(load_corpus_config(SAMPLE_CORPUS_CONFIG), out)
    return out
