"""JSON Lines / Parquet adapter for field-based tasks someone has already rendered (an export of any benchmark).

Each row is one (example, template): input, outputs (a list, or one string), optional candidates,
template id and example id. Rows are grouped into tasks by the task id column (or, without one, by
file name). Per-task metadata comes from the `metadata` YAML or from the first row's columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imlsweep.config import StrictModel, load_config
from imlsweep.corpus.adapters.fields import outputs_list, require_text, require_text_list
from imlsweep.corpus.adapters.files import read_rows
from imlsweep.corpus.config import RecordsSource
from imlsweep.corpus.schema import INSTRUCTION_TYPES, InstructionType
from imlsweep.corpus.task import Example, InvalidTask, SourceTask, TaskProblem
from imlsweep.errors import UserError


class TaskMetadata(StrictModel):
    category: str | None = None
    data_source: str | None = None
    instruction_type: InstructionType | None = None
    definition: str | None = None
    language: str | None = None


class MetadataFile(StrictModel):
    tasks: dict[str, TaskMetadata]


def source_files(source: RecordsSource) -> list[Path]:
    path = Path(source.path)
    suffix = ".jsonl" if source.format == "jsonl" else ".parquet"
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(path.glob(f"*{suffix}"))
        if files:
            return files
    raise UserError(f"{path}: no {suffix} file here (source benchmark {source.benchmark})")


def optional_text(row: dict, key: str, field: str) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return require_text(value, field)


def parse_example(row: dict, where: str, task_id: str, index: int, source: RecordsSource) -> Example:
    fields = source.fields
    if fields.outputs not in row or row[fields.outputs] is None:
        raise TaskProblem(f"{where}.{fields.outputs}", "missing")
    candidates = row.get(fields.candidates)
    return Example(
        input=require_text(row.get(fields.input), f"{where}.{fields.input}"),
        outputs=outputs_list(row[fields.outputs], f"{where}.{fields.outputs}"),
        candidates=None if candidates is None else require_text_list(candidates, f"{where}.{fields.candidates}"),
        template_id=optional_text(row, fields.template_id, f"{where}.{fields.template_id}"),
        example_id=optional_text(row, fields.example_id, f"{where}.{fields.example_id}") or f"{task_id}-{index}",
    )


def task_metadata(first_row: dict, metadata: TaskMetadata | None, source: RecordsSource) -> dict[str, Any]:
    """Metadata values win over columns; the source's defaults fill the rest."""
    fields = source.fields
    values = {
        "category": first_row.get(fields.category),
        "data_source": first_row.get(fields.data_source),
        "instruction_type": first_row.get(fields.instruction_type) or source.instruction_type,
        "definition": first_row.get(fields.definition) or "",
        "language": first_row.get(fields.language) or source.language,
    }
    if metadata is not None:
        values.update({key: value for key, value in metadata.model_dump().items() if value is not None})
    if values["category"] is None:
        raise TaskProblem("category", f"missing (no {fields.category!r} column and no metadata entry)")
    for key in ("category", "instruction_type", "definition", "language"):
        require_text(values[key], key)
    if values["instruction_type"] not in INSTRUCTION_TYPES:
        raise TaskProblem("instruction_type", f"must be task, instance or keywords, got {values['instruction_type']!r}")
    return values


def build_task(task_id: str, rows: list[tuple[str, str, dict]], metadata: TaskMetadata | None,
               source: RecordsSource) -> SourceTask:
    examples = [parse_example(row, where, task_id, index, source) for index, (_, where, row) in enumerate(rows)]
    values = task_metadata(rows[0][2], metadata, source)
    data_source = values["data_source"]
    return SourceTask(
        task_id=task_id,
        benchmark=source.benchmark,
        source_file=rows[0][0],
        category=values["category"],
        data_source=require_text(data_source, "data_source") if data_source is not None else task_id,
        instruction_type=values["instruction_type"],
        definition=values["definition"],
        language=values["language"],
        examples=examples,
        languages=(values["language"],),
    )


def read_records(source: RecordsSource) -> Iterator[SourceTask | InvalidTask]:
    metadata = load_config(source.metadata, MetadataFile).tasks if source.metadata else {}
    grouped: dict[str, list[tuple[str, str, dict]]] = {}
    for path in source_files(source):
        try:
            rows = read_rows(path)
        except TaskProblem as problem:
            yield problem.invalid(str(path), f"(every task in {path.name})")
            continue
        for number, row in enumerate(rows):
            task_id = row.get(source.fields.task_id, path.stem)
            where = f"row {number}"
            grouped.setdefault(str(task_id), []).append((str(path), where, row))
    for task_id, rows in grouped.items():
        try:
            yield build_task(task_id, rows, metadata.get(task_id), source)
        except TaskProblem as problem:
            yield problem.invalid(rows[0][0], task_id)
