"""UnifiedSKG adapter: structured-knowledge examples in UnifiedSKG's seq2seq form, one folder per task
(`<path>/<task>/{train,dev,test}.jsonl`, `.json` or `.parquet`, as its seq2seq construction yields them).

Each example has `text_in` (the question or utterance; empty for data-to-text), `struct_in` (the
linearized knowledge) and `seq_out` (the target). `struct_in` is taken as written when it is a string;
a table `{header, rows}` is linearized as UnifiedSKG does (`col : h1 | h2 row 1 : a | b ...`) and a
list of triples as its DART construction does (`s : p : o | ...`). The input is built as UnifiedSKG
feeds its models with the knowledge concatenated:

- `text_in ; structured knowledge: struct_in`,
- conversational `text_in` ("utterance || earlier turns"):
  `utterance ; structured knowledge: struct_in ; context: earlier turns`,
- no `text_in`: `structured knowledge: struct_in`.

Row fields: `input` as above, `outputs` <- `references` when the example has them (UnifiedSKG's dev
and test items), else [`seq_out`] (a list of strings is several references), `example_id`
`<task>-<split>-<index>`. Keyword-style: `instruction_type` keywords, `definition` the task's
hand-written instruction from the `instructions` YAML.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imlsweep.corpus.adapters.fields import outputs_list, require_text, type_name
from imlsweep.corpus.adapters.files import dataset_split_rows
from imlsweep.corpus.adapters.instructions import missing_instruction, read_instructions
from imlsweep.corpus.adapters.renderers import linearize_table, linearize_triples
from imlsweep.corpus.config import UnifiedSKGSource, UnifiedSKGTask
from imlsweep.corpus.task import Example, InvalidTask, SourceTask, TaskProblem

CONVERSATION_SEPARATOR = " || "


def knowledge_text(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return linearize_table(value, field)
    if isinstance(value, list):
        return linearize_triples(value, field)
    raise TaskProblem(field, f"expected linearized text, a table or a list of triples, got {type_name(value)}")


def model_input(text_in: str, struct_in: str) -> str:
    """The sequence UnifiedSKG feeds its models (knowledge concatenated to the text)."""
    if not text_in:
        return f"structured knowledge: {struct_in}"
    if CONVERSATION_SEPARATOR in text_in:
        utterance, context = text_in.split(CONVERSATION_SEPARATOR, 1)
        return f"{utterance} ; structured knowledge: {struct_in} ; context: {context}"
    return f"{text_in} ; structured knowledge: {struct_in}"


def parse_example(row: dict, where: str, example_id: str, split: str | None) -> Example:
    text_in = row.get("text_in") or ""
    require_text(text_in, f"{where}.text_in")
    if row.get("struct_in") is None:
        raise TaskProblem(f"{where}.struct_in", "missing")
    references = row.get("references")
    target_field = "references" if references is not None else "seq_out"
    if row.get(target_field) is None:
        raise TaskProblem(f"{where}.seq_out", "missing")
    return Example(input=model_input(text_in, knowledge_text(row["struct_in"], f"{where}.struct_in")),
                   outputs=outputs_list(row[target_field], f"{where}.{target_field}"),
                   example_id=example_id, split=split)


def build_task(task: UnifiedSKGTask, instruction: str, source: UnifiedSKGSource) -> SourceTask:
    task_id = task.task_id or task.task
    folder = Path(source.path) / task.task
    examples = []
    for split_name, corpus_split in source.splits.items():
        data_file, rows = dataset_split_rows(folder, split_name)
        try:
            examples += [parse_example(row, f"{split_name}[{index}]", f"{task_id}-{split_name}-{index}", corpus_split)
                         for index, row in enumerate(rows)]
        except TaskProblem as problem:
            raise TaskProblem(problem.field, problem.reason, data_file) from None
    if not examples:
        raise TaskProblem("splits", "the task's files have no examples")
    return SourceTask(
        task_id=task_id,
        benchmark=source.benchmark,
        source_file=str(folder),
        category=task.category,
        data_source=task.data_source or task.task,
        instruction_type="keywords",
        definition=instruction,
        language=source.language,
        examples=examples,
        languages=(source.language,),
    )


def read_unifiedskg(source: UnifiedSKGSource) -> Iterator[SourceTask | InvalidTask]:
    instructions = read_instructions(source.instructions)
    for task in source.tasks:
        task_id = task.task_id or task.task
        if task_id not in instructions:
            yield missing_instruction(source.instructions, task_id)
            continue
        try:
            yield build_task(task, instructions[task_id], source)
        except TaskProblem as problem:
            yield problem.invalid(str(Path(source.path) / task.task), task_id)
