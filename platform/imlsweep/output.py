"""Where `--json` output goes: stdout carries the JSON alone.

While a `--json` command runs, whatever else is printed (Ray's forwarded worker logs, Ray Data's
progress lines, DeepSpeed's messages) goes to stderr, and `print_json` writes to the real stdout.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Iterator

_json_stream = None  # the real stdout while a --json command runs


@contextlib.contextmanager
def json_stdout() -> Iterator[None]:
    global _json_stream
    _json_stream, sys.stdout = sys.stdout, sys.stderr
    try:
        yield
    finally:
        sys.stdout, _json_stream = _json_stream, None


def print_json(value: Any) -> None:
    print(json.dumps(value, default=str), file=_json_stream or sys.stdout, flush=True)
