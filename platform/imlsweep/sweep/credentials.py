"""Where a sweep's W&B credentials come from: said without reading the key into anything logged or stored.

On a cluster the key never travels through Ray: a job's runtime_env is readable in `ray job list` (by anyone
who reaches the dashboard) and in the head's session files. The nodes hold the key instead, in a netrc file
(mounted by the cluster YAML's `file_mounts`, or from a Kubernetes Secret on KubeRay) that `NETRC` points
to; wandb reads it there (docs/cluster.md). On one machine, `WANDB_API_KEY` or `wandb login`'s ~/.netrc.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

from imlsweep.errors import UserError
from imlsweep.sweep.spec import Tracking

DEFAULT_HOST = "api.wandb.ai"


def wandb_host(environ: Mapping[str, str]) -> str:
    """The machine name wandb looks up in a netrc file: WANDB_BASE_URL's host, api.wandb.ai by default."""
    base_url = environ.get("WANDB_BASE_URL")
    return (urlparse(base_url).hostname or DEFAULT_HOST) if base_url else DEFAULT_HOST


def netrc_path(environ: Mapping[str, str]) -> Path:
    """The netrc file wandb reads: NETRC, else ~/.netrc."""
    return Path(environ.get("NETRC") or "~/.netrc").expanduser()


def credentials_source(environ: Mapping[str, str] | None = None) -> str | None:
    """Where wandb will find an API key ("the WANDB_API_KEY environment variable", "netrc file PATH (machine
    HOST)"), or None: runs go offline. Only the presence of a key is checked; the key is never returned."""
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_API_KEY"):
        return "the WANDB_API_KEY environment variable"
    path, host = netrc_path(environ), wandb_host(environ)
    if not path.is_file() and not path.is_char_device():
        return None
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except netrc.NetrcParseError as error:  # its message may quote a token of the file: a key, even
        raise UserError(f"{path}: not a valid netrc file (line {error.lineno}); W&B reads its key from it") from None
    except OSError:
        return None
    return f"netrc file {path} (machine {host})" if entry and entry[2] else None


def wandb_mode(tracking: Tracking, environ: Mapping[str, str] | None = None) -> str:
    """`tracking.mode`; `auto` is online where credentials are found, offline otherwise."""
    if tracking.mode != "auto":
        return tracking.mode
    return "online" if credentials_source(environ) else "offline"


def describe_tracking(tracking: Tracking, environ: Mapping[str, str] | None = None) -> str:
    """The sweep's one line on W&B: whether runs go online, and where the credentials come from."""
    if not tracking.wandb:
        return "W&B: off (tracking.wandb: false)"
    source = credentials_source(environ)
    found = f"credentials from {source}" if source else "no credentials (WANDB_API_KEY or a netrc entry)"
    mode = wandb_mode(tracking, environ)
    reason = "tracking.mode" if tracking.mode != "auto" else "tracking.mode: auto"
    return f"W&B: runs {mode} ({reason}), {found}"
