"""How every command reaches Ray: the running instance, the cluster it is pointed at, or a new local one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# Ray's own processes and the tokenizers' thread pools would otherwise fight over the same cores.
LOCAL_ENV = {"TOKENIZERS_PARALLELISM": "false"}


@contextlib.contextmanager
def ray_session(address: str | None = None, *, local_cpus: int | None = None) -> Iterator[None]:
    """Use Ray as the command finds it: already initialised (a test, a notebook) stays as it is; else
    connect to `address`, or to RAY_ADDRESS (which `ray job submit` sets); else start a local instance
    with `local_cpus` logical CPUs (default: the machine's, at least 4, so a small machine still fits a
    trial's worker beside its data tasks). Only an instance connected here is shut down on the way out.
    Ray's worker logs stay in its session files: commands print their own progress."""
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":
        ray.init(address="local", num_cpus=local_cpus or max(4, os.cpu_count() or 1), include_dashboard=False,
                 log_to_driver=False, runtime_env={"env_vars": LOCAL_ENV})
    else:
        ray.init(address=address, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
