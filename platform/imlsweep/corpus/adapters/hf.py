"""Hugging Face `datasets` adapter for keyword-style benchmarks taken from `datasets` (ExMix, T5).

Each configured task is one `datasets.load_dataset` call (a hub name or a local path) plus a field
mapping; its instruction is the hand-written one from the source's `instructions` YAML.

Fields are names or dotted paths into nested values (`answers.text`, `translation.de`); a list met
on the way is mapped over (`annotations.text` of a list of annotations). Row fields:

- `input`: the input field rendered as text; with several fields, one `field: value` line each.
- `outputs`: a string, or a class label's name, or a number; a list gives one reference per item;
  any other value (a dict) is rendered as one reference. A renderer named for the output field
  renders its whole value as one reference.
- `candidates`: the candidates field (a list, each item rendered), else a class label's names.

Values that are not plain text go through the renderer `render` names for the field (`text` by
default; `lines`, `json`, `table`, `triples`: see `renderers.py`). Keyword-style instructions:
`instruction_type` keywords, `definition` the task's instruction, `example_id` `<task>-<index>`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from imlsweep.corpus.adapters.fields import type_name
from imlsweep.corpus.adapters.instructions import missing_instruction, read_instructions
from imlsweep.corpus.adapters.renderers import render_value
from imlsweep.corpus.config import HFSource, HFTask
from imlsweep.corpus.task import Example, InvalidTask, SourceTask, TaskProblem

MISSING = object()


def load_hf_dataset(task: HFTask):
    import datasets

    try:
        return datasets.load_dataset(task.dataset, task.name, split=task.split, data_files=task.data_files)
    except Exception as error:  # datasets raises many types (missing files, unknown split, no network)
        raise TaskProblem("dataset", f"datasets.load_dataset({task.dataset!r}) failed: {error}") from None


def label_names(features: Any, path: str) -> list[str] | None:
    """The class names of a top-level ClassLabel field (or a list of them), else None."""
    feature = features.get(path) if features is not None and "." not in path else None
    feature = getattr(feature, "feature", feature)  # a Sequence / List of class labels
    names = getattr(feature, "names", None)
    return list(names) if names is not None else None


def lookup(value: Any, parts: list[str]) -> Any:
    for depth, part in enumerate(parts):
        if isinstance(value, list):
            return [lookup(item, parts[depth:]) for item in value]
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def field_value(row: dict, path: str, where: str) -> Any:
    value = lookup(row, path.split("."))
    if value is MISSING or (isinstance(value, list) and MISSING in value):
        raise TaskProblem(f"{where}.{path}", "missing")
    return value


def rendered_field(row: dict, path: str, task: HFTask, where: str) -> str:
    return render_value(field_value(row, path, where), task.render.get(path, "text"), f"{where}.{path}")


def input_text(row: dict, fields: str | list[str], task: HFTask, where: str) -> str:
    if isinstance(fields, str):
        return rendered_field(row, fields, task, where)
    return "\n".join(f"{field}: {rendered_field(row, field, task, where)}" for field in fields)


def label_or_text(item: Any, names: list[str] | None, field: str) -> str:
    if names is not None and isinstance(item, int) and not isinstance(item, bool):
        if not 0 <= item < len(names):
            raise TaskProblem(field, f"class label {item} is not one of the {len(names)} classes")
        return names[item]
    return render_value(item, "text", field)


def output_texts(value: Any, names: list[str] | None, task: HFTask, where: str) -> list[str]:
    field = f"{where}.{task.output}"
    if task.output in task.render:
        return [render_value(value, task.render[task.output], field)]
    items = value if isinstance(value, list) else [value]
    if not items:
        raise TaskProblem(field, "empty list")
    return [label_or_text(item, names, field) for item in items]


def candidate_texts(value: Any, task: HFTask, where: str) -> list[str]:
    field = f"{where}.{task.candidates}"
    if not isinstance(value, list):
        raise TaskProblem(field, f"expected a list of options, got {type_name(value)}")
    return [render_value(item, task.render.get(task.candidates, "text"), f"{field}[{index}]")
            for index, item in enumerate(value)]


def build_task(task: HFTask, instruction: str, source: HFSource) -> SourceTask:
    dataset = load_hf_dataset(task)
    names = label_names(dataset.features, task.output)
    examples = []
    for index, row in enumerate(dataset):
        where = f"{task.split}[{index}]"
        candidates = candidate_texts(field_value(row, task.candidates, where), task, where) if task.candidates else None
        examples.append(
            Example(
                input=input_text(row, task.input, task, where),
                outputs=output_texts(field_value(row, task.output, where), names, task, where),
                candidates=candidates,
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
            yield missing_instruction(source.instructions, task.task_id)
            continue
        try:
            yield build_task(task, instructions[task.task_id], source)
        except TaskProblem as problem:
            yield problem.invalid(task.dataset, task.task_id)
