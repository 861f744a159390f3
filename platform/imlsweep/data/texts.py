"""Plain-text add-on sources (pre-training text, dialogue): one document per JSON line or text line."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from imlsweep.errors import UserError


@lru_cache(maxsize=4)
def read_text_documents(path: str) -> tuple[str, ...]:
    """Documents of a .jsonl file (field "text") or a .txt file (one per non-empty line)."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{path}: add-on texts file not found")
    documents = []
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if file.suffix != ".jsonl":
                documents.append(line.rstrip("\n"))
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"{path}: line {number}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise UserError(f"{path}: line {number}: needs a string field 'text'")
            documents.append(record["text"])
    if not documents:
        raise UserError(f"{path}: add-on texts file has no documents")
    return tuple(documents)
