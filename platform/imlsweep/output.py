"""Where `--json` output goes: stdout carries the JSON alone.

While a `--json` command runs, whatever else is printed (Ray's forwarded logs, the warnings of the
Ray processes it starts, which inherit file descriptor 1, DeepSpeed's messages) goes to stderr, and
`print_json` writes to the real stdout.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from typing import Any, Iterator

_json_stream = None  # the real stdout while a --json command runs


@contextlib.contextmanager
def json_stdout() -> Iterator[None]:
    global _json_stream
    python_stdout = sys.stdout
    python_stdout.flush()
    saved_fd = os.dup(1)
    # A real stdout gets its own handle on the saved descriptor; a replaced one (a test's capture) stays.
    _json_stream = os.fdopen(os.dup(saved_fd), "w") if writes_to_fd1(python_stdout) else python_stdout
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved_fd, 1)
        os.close(saved_fd)
        sys.stdout = python_stdout
        if _json_stream is not python_stdout:
            _json_stream.close()
        _json_stream = None


def writes_to_fd1(stream: Any) -> bool:
    try:
        return stream.fileno() == 1
    except (AttributeError, OSError, io.UnsupportedOperation):
        return False


def print_json(value: Any) -> None:
    print(json.dumps(value, default=str), file=_json_stream or sys.stdout, flush=True)


def print_figures(figures: dict[str, Any], as_json: bool) -> None:
    """A benchmark's figures: one JSON object on stdout, or one aligned `name: value` line each."""
    if as_json:
        print_json(figures)
        return
    for name, value in figures.items():
        print(f"{name:>36}: {value:,.3f}" if isinstance(value, float) else f"{name:>36}: {value}")
