"""Hugging Face `datasets` adapter for keyword-style benchmarks (CrossFit, ExMix, T5, UnifiedSKG).

Each configured task is one `datasets.load_dataset` call (a hub name or a local path) plus a field
mapping; its instruction is the hand-written one from the source's `instructions` YAML.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from imlsweep.config import read_yaml
from imlsweep.corpus.adapters.fields import require_text, require_text_list, type_name
from imlsweep.corpus.config import HFSource, HFTask
from imlsweep.corpus.task import Example, InvalidTask, SourceTask, TaskProblem
from imlsweep.errors import UserError


def read_instructions(path: str) -> dict[str, str]:
    data = read_yaml(path)
    if not isinstance(data, dict) or not all(isinstance(value, str) for value in data.values()):
        raise UserError(f"{path}: expected a mapping of task id -> instruction text")
    return {str(key): value for key, value in data.items()}


def load_hf_dataset(task: HFTask):
    import datasets

    try:
        return datasets.load_dataset(task.dataset, task.name, split=task.split, data_files=task.data_files)
    except Exception as error:  # datasets raises many types (missing files, unknown split, no network)
        raise TaskProblem("dataset", f"datasets.load_dataset({task.dataset!r}) failed: {error}") from None


def label_names(features: Any, field: str) -> list[str] | None:
    feature = features.get(field) if features is not None else None
    return list(feature.names) if feature is not None and hasattr(feature, "names") else None


def field_value(row: dict, field: str, where: str) -> Any:
    if field not in row:
        raise TaskProblem(f"{where}.{field}", "missing")
    return row[field]


def as_outputs(value: Any, names: list[str] | None, field: str) -> list[str]:
    if names is not None and isinstance(value, int):
        return [names[value]]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, str):
        return [value]
    return require_text_list(value, field)


def input_text(row: dict, fields: str | list[str], where: str) -> str:
    if isinstance(fields, str):
        return require_text(field_value(row, fields, where), f"{where}.{fields}")
    lines = []
    for field in fields:
        value = field_value(row, field, where)
        if not isinstance(value, (str, int, float)):
            raise TaskProblem(f"{where}.{field}", f"expected text, got {type_name(value)}")
        lines.append(f"{field}: {value}")
    return "\n".join(lines)


def build_task(task: HFTask, instruction: str, source: HFSource) -> SourceTask:
    dataset = load_hf_dataset(task)
    names = label_names(dataset.features, task.output)
    examples = []
    for index, row in enumerate(dataset):
        where = f"{task.split}[{index}]"
        candidates = field_value(row, task.candidates, where) if task.candidates else None
        examples.append(
            Example(
                input=input_text(row, task.input, where),
                outputs=as_outputs(field_value(row, task.output, where), names, f"{where}.{task.output}"),
                candidates=None if candidates is None else require_text_list(candidates, f"{where}.{task.candidates}"),
                example_id=f"{task.task_id}-{index}",
            )
        )
    if not examples:
        raise TaskProblem(task.split, "no rows")
    if names is not None and task.candidates is None:
        # A classification label set doubles as the options for rank classification.
        for example in examples:
            example.candidates = list(names)
    return SourceTask(
        task_id=task.task_id,
        benchmark=source.benchmark,
        source_file=task.dataset,
        category=task.category,
        data_source=task.data_source or task.dataset,
        instruction_type=source.instruction_type,
        definition=instruction,
        language=source.language,
        examples=examples,
        languages=(source.language,),
    )


def read_hf(source: HFSource) -> Iterator[SourceTask | InvalidTask]:
    instructions = read_instructions(source.instructions)
    for task in source.tasks:
        if task.task_id not in instructions:
            yield InvalidTask(source.instructions, task.task_id, "instruction", "missing from the instructions file")
            continue
        try:
            yield build_task(task, instructions[task.task_id], source)
        except TaskProblem as problem:
            yield InvalidTask(task.dataset, task.task_id, problem.field, problem.reason)
