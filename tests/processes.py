"""Killing a CLI process that started a local Ray instance, as a crash or an operator's `kill -9` would."""

from __future__ import annotations

import os
import signal
import subprocess


def session_members(session: int) -> list[int]:
    """The processes of a session: a local Ray's workers each lead a process group of their own, so
    killing the driver's group alone leaves them running until they notice their raylet is gone."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == session:
                    members.append(int(entry))
            except ProcessLookupError:
                pass
    return members


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILL a process started with `start_new_session=True` and everything in its session at once."""
    for pid in session_members(process.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
