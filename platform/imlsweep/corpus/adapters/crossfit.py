"""CrossFit adapter: its data layout, `<task>/<task>[_<variant>]_{train,dev,test}.tsv`.

Each line is the input, a tab, and the output; a task with several acceptable answers writes them as
further tab-separated columns, as CrossFit's task scripts write them and its loader reads them
(`line.split("\t")[1:]`). By default `train` is the corpus train split, `dev` validation and `test`
test (`splits` maps them otherwise).

Row fields: `input` <- column 1, `outputs` <- the non-empty columns after it, `candidates` <- the
`(A) ... (B) ...` options CrossFit writes into multiple-choice inputs when the answer is one of them
(`options`), or the task's distinct answers (`labels`, for classification tasks), `example_id`
`<task>-<split>-<line>`. Keyword-style: `instruction_type` keywords, `definition` the task's
hand-written instruction from the `instructions` YAML. A line without an output column rejects the
task, naming the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from imlsweep.corpus.adapters.files import read_tsv
from imlsweep.corpus.adapters.instructions import missing_instruction, read_instructions
from imlsweep.corpus.config import CrossFitSource, CrossFitTask
from imlsweep.corpus.task import Example, InvalidTask, SourceTask, TaskProblem

OPTION_MARK = re.compile(r" \(([A-Z])\) ")


def inline_options(text: str) -> list[str] | None:
    """The options of `question (A) first (B) second ...` (letters in order from A), or None."""
    marks = list(OPTION_MARK.finditer(text))
    letters = [mark.group(1) for mark in marks]
    if len(marks) < 2 or letters != [chr(ord("A") + index) for index in range(len(marks))]:
        return None
    ends = [mark.start() for mark in marks[1:]] + [len(text)]
    return [text[mark.end():end].strip() for mark, end in zip(marks, ends)]


def split_file(root: Path, task: str, variant: str | None, split: str) -> Path:
    stem = f"{task}_{variant}" if variant else task
    return root / task / f"{stem}_{split}.tsv"


def file_examples(path: Path, task_id: str, split_name: str, corpus_split: str | None) -> list[Example]:
    if not path.is_file():
        raise TaskProblem(f"splits.{split_name}", "no such file", str(path))
    examples = []
    for number, columns in read_tsv(path):
        if len(columns) < 2:
            raise TaskProblem(f"line {number}", "expected the input and at least one output separated by tabs, "
                              "got 1 column (no tab)", str(path))
        answers = [column for column in columns[1:] if column.strip()]
        if not answers:
            raise TaskProblem(f"line {number}", "every output column is empty", str(path))
        examples.append(Example(input=columns[0], outputs=answers, example_id=f"{task_id}-{split_name}-{number}",
                                split=corpus_split))
    return examples


def add_candidates(examples: list[Example], mode: str) -> None:
    if mode == "labels":
        labels = list(dict.fromkeys(example.outputs[0] for example in examples))
        for example in examples:
            example.candidates = labels
    elif mode == "options":
        for example in examples:
            options = inline_options(example.input)
            if options and example.outputs[0] in options:
                example.candidates = options


def build_task(task: CrossFitTask, instruction: str, source: CrossFitSource) -> SourceTask:
    task_id = task.task_id or task.task
    root = Path(source.path)
    examples = []
    for split_name, corpus_split in source.splits.items():
        examples += file_examples(split_file(root, task.task, source.variant, split_name), task_id, split_name,
                                  corpus_split)
    if not examples:
        raise TaskProblem("splits", "the task's files have no lines")
    add_candidates(examples, task.candidates or source.candidates)
    return SourceTask(
        task_id=task_id,
        benchmark=source.benchmark,
        source_file=str(root / task.task),
        category=task.category,
        data_source=task.data_source or task.task,
        instruction_type="keywords",
        definition=instruction,
        language=source.language,
        examples=examples,
        languages=(source.language,),
    )


def read_crossfit(source: CrossFitSource) -> Iterator[SourceTask | InvalidTask]:
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
