"""P3 adapter: PromptSource already applied, as bigscience/P3 publishes it, grouped back into tasks.

P3 has one subset per (dataset, template), named `<dataset>_<template>` (`super_glue_rte_GPT_3_style`),
each a folder of split files: the hub's `<split>-00000-of-00001.parquet`, or `<split>.parquet` /
`<split>.jsonl`, or a `save_to_disk` folder (the TFRecord files of P3's first release are not read; the
hub's Parquet files hold the same rows). A configured task names its dataset prefix and takes
every subset starting with it (or the templates it lists); `_score_eval` subsets (one row per answer
option) are left out, since `answer_choices` already gives the options.

Row fields: `input` <- `inputs_pretokenized`, `outputs` <- [`targets_pretokenized`] (both stripped of
surrounding whitespace), `candidates` <- `answer_choices` (when the subset has it), `template_id` <-
the subset name after the dataset prefix. P3 does not store which source example a row came from;
rows are written in the source split's order, so `example_id` `<task>-<split>-<row>` puts the rows
at one position in every template's subset in one example (a template that skipped an example
shifts the rows after it). Instance-level instructions: `instruction_type` instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from imlsweep.corpus.adapters.fields import require_text, require_text_list
from imlsweep.corpus.adapters.files import dataset_split_rows
from imlsweep.corpus.config import P3Source, P3Task
from imlsweep.corpus.task import Example, InvalidTask, SourceTask, TaskProblem
from imlsweep.errors import UserError

SCORE_EVAL_SUFFIX = "_score_eval"


def task_subsets(task: P3Task, subsets: list[str], prefixes: list[str]) -> list[str]:
    """The subset folders of a task, in name order."""
    if task.templates is not None:
        names = [f"{task.dataset}_{template}" for template in task.templates]
        for index, name in enumerate(names):
            if name not in subsets:
                raise TaskProblem(f"templates[{index}]", f"no subset folder {name}")
        return names
    longer = [prefix for prefix in prefixes if prefix.startswith(f"{task.dataset}_")]
    chosen = [name for name in subsets if name.startswith(f"{task.dataset}_") and not name.endswith(SCORE_EVAL_SUFFIX)
              and not any(name.startswith(f"{prefix}_") for prefix in longer)]
    if not chosen:
        raise TaskProblem("dataset", f"no subset folder starting with {task.dataset}_")
    return chosen


def subset_examples(task_id: str, subset: str, template: str, split_name: str, corpus_split: str | None,
                    folder: Path) -> list[Example]:
    data_file, rows = dataset_split_rows(folder, split_name)
    examples = []
    for index, row in enumerate(rows):
        where = f"{subset}: {split_name}[{index}]"
        target = row.get("targets_pretokenized")
        if target is None:
            raise TaskProblem(f"{where}.targets_pretokenized", "missing (a P3 subset without targets)", data_file)
        try:
            choices = row.get("answer_choices")
            examples.append(Example(
                input=require_text(row.get("inputs_pretokenized"), f"{where}.inputs_pretokenized").strip(),
                outputs=[require_text(target, f"{where}.targets_pretokenized").strip()],
                candidates=None if choices is None else require_text_list(choices, f"{where}.answer_choices"),
                template_id=template,
                example_id=f"{task_id}-{split_name}-{index}",
                split=corpus_split,
            ))
        except TaskProblem as problem:
            raise TaskProblem(problem.field, problem.reason, data_file) from None
    return examples


def build_task(task: P3Task, source: P3Source, subsets: list[str]) -> SourceTask:
    task_id = task.task_id or task.dataset
    root = Path(source.path)
    examples = []
    for subset in task_subsets(task, subsets, [other.dataset for other in source.tasks]):
        template = subset[len(task.dataset) + 1:]
        for split_name, corpus_split in (task.splits or source.splits).items():
            examples += subset_examples(task_id, subset, template, split_name, corpus_split, root / subset)
    if not examples:
        raise TaskProblem("dataset", "the task's subsets have no rows")
    return SourceTask(
        task_id=task_id,
        benchmark=source.benchmark,
        source_file=str(root / task.dataset),
        category=task.category,
        data_source=task.data_source or task.dataset,
        instruction_type="instance",
        definition="",
        language=source.language,
        examples=examples,
        languages=(source.language,),
    )


def read_p3(source: P3Source) -> Iterator[SourceTask | InvalidTask]:
    root = Path(source.path)
    if not root.is_dir():
        raise UserError(f"{root}: no P3 data folder here (source benchmark {source.benchmark})")
    subsets = sorted(path.name for path in root.iterdir() if path.is_dir())
    for task in source.tasks:
        try:
            yield build_task(task, source, subsets)
        except TaskProblem as problem:
            yield problem.invalid(str(root), task.task_id or task.dataset)
