"""Small benchmark folders in each project's published layout, written by the corpus tests."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from imlsweep.assets import OPT_IML_SAMPLE_DIR

SAMPLE = OPT_IML_SAMPLE_DIR


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_parquet(path: Path, columns: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def template(name: str, jinja: str, answer_choices: str | None = None, original_task: bool = True) -> dict:
    return {"name": name, "jinja": jinja, "answer_choices": answer_choices, "original_task": original_task}


def write_templates(folder: Path, dataset: str, templates: list[dict]) -> Path:
    """A promptsource templates.yaml with its `!Template` / `!TemplateMetadata` tags."""
    lines = [f"dataset: {dataset}", "templates:"]
    for index, item in enumerate(templates):
        lines += [f"  id-{index}: !Template",
                  f"    answer_choices: {json.dumps(item['answer_choices'])}",
                  f"    id: id-{index}",
                  f"    jinja: {json.dumps(item['jinja'])}",
                  "    metadata: !TemplateMetadata",
                  "      choices_in_prompt: false",
                  "      languages:",
                  "      - en",
                  "      metrics:",
                  "      - Accuracy",
                  f"      original_task: {json.dumps(item['original_task'])}",
                  f"    name: {json.dumps(item['name'])}",
                  "    reference: ''"]
    path = folder / dataset / "templates.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
