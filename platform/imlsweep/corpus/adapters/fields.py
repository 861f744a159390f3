"""Checks shared by the adapters: each names the offending field when a value has the wrong shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imlsweep.corpus.task import TaskProblem


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def require_text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise TaskProblem(field, f"expected a string, got {type_name(value)}")
    return value


def require_text_list(value: Any, field: str, *, allow_empty: bool = False) -> list[str]:
    if not isinstance(value, list):
        raise TaskProblem(field, f"expected a list of strings, got {type_name(value)}")
    if not value and not allow_empty:
        raise TaskProblem(field, "empty list")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise TaskProblem(f"{field}[{index}]", f"expected a string, got {type_name(item)}")
    return value


def outputs_list(value: Any, field: str) -> list[str]:
    """Field-based exports may give one output as a string; anything else must be a list of strings."""
    if isinstance(value, str):
        return [value]
    return require_text_list(value, field)


def read_json_text(path: Path) -> Any:
    """Strict UTF-8 JSON; undecodable bytes and syntax errors become TaskProblems with their position."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TaskProblem("<file>", f"undecodable bytes at offset {error.start} (not UTF-8)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise TaskProblem("<file>", f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
