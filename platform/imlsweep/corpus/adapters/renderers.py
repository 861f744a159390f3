"""Structured values as prompt text: lists, dicts and nested fields rendered by a renderer a config
names (`render: {tripleset: triples}`), so real dataset schemas need no export step.

- `text` (the default): strings as they are, numbers and booleans as written in JSON, null as
  nothing; a list's items joined by ", "; a dict as "key: value" pairs joined by ", " (nested values
  the same way).
- `lines`: a list's items (each as `text`), one a line.
- `json`: the value as compact JSON.
- `table`: a table `{header: [...], rows: [[...], ...]}` linearized as UnifiedSKG does:
  "col : h1 | h2 row 1 : a | b row 2 : c | d".
- `triples`: knowledge-graph triples `[[subject, relation, object], ...]` linearized as UnifiedSKG's
  DART construction does: "subject : relation : object | ..." with the relation lower-cased.
"""

from __future__ import annotations

import json
from typing import Any

from imlsweep.corpus.adapters.fields import type_name
from imlsweep.corpus.config import Renderer
from imlsweep.corpus.task import TaskProblem


def text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(text(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key}: {text(item)}" for key, item in value.items())
    return str(value)


def cells(value: Any, field: str) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise TaskProblem(field, f"expected a list, got {type_name(value)}")
    return [text(item) for item in value]


def linearize_table(value: Any, field: str) -> str:
    if not isinstance(value, dict) or "header" not in value or "rows" not in value:
        raise TaskProblem(field, f"expected a table {{header: [...], rows: [[...]]}}, got {type_name(value)}")
    rows = value["rows"]
    if not isinstance(rows, (list, tuple)):
        raise TaskProblem(f"{field}.rows", f"expected a list of rows, got {type_name(rows)}")
    parts = ["col : " + " | ".join(cells(value["header"], f"{field}.header"))]
    parts += [f"row {number} : " + " | ".join(cells(row, f"{field}.rows[{number - 1}]"))
              for number, row in enumerate(rows, start=1)]
    return " ".join(parts)


def linearize_triples(value: Any, field: str) -> str:
    if not isinstance(value, (list, tuple)):
        raise TaskProblem(field, f"expected a list of [subject, relation, object] triples, got {type_name(value)}")
    triples = []
    for index, triple in enumerate(value):
        parts = cells(triple, f"{field}[{index}]")
        if len(parts) != 3:
            raise TaskProblem(f"{field}[{index}]", f"expected [subject, relation, object], got {len(parts)} items")
        subject, relation, obj = parts
        triples.append(f"{subject} : {relation.lower()} : {obj}")
    return " | ".join(triples)


def render_value(value: Any, renderer: Renderer, field: str) -> str:
    """`value` as text by the named renderer; `field` names it in errors."""
    if renderer == "text":
        return text(value)
    if renderer == "lines":
        return "\n".join(text(item) for item in value) if isinstance(value, (list, tuple)) else text(value)
    if renderer == "json":
        return json.dumps(value, ensure_ascii=False, default=str)
    if renderer == "table":
        return linearize_table(value, field)
    return linearize_triples(value, field)
