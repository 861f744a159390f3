"""Chain-of-thought adapter: reasoning datasets as OPT-IML's reasoning portion uses them.

Each dataset is `<path>/<dataset>_<split>.tsv` in FLAN's `cot_data` layout (question, answer and
chain of thought separated by tabs, a literal `\\n` for each line break) or `.jsonl` / `.parquet`
with the fields `fields` names (question, chain_of_thought, answer by default).

Row fields: `input` <- the question, `outputs` <- [target], where the target is the rationale then
the answer in one format, `<rationale> The answer is <answer>.` (no second full stop when the answer
ends in one), or the answer alone with `target: answer`; `example_id` `<task>-<split>-<index>`.
Task-level instructions: `instruction_type` task, `definition` "Answer the following question by
reasoning step by step." (or "Answer the following question." for answer-only targets).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from imlsweep.corpus.adapters.fields import require_text
from imlsweep.corpus.adapters.files import read_rows, read_tsv
from imlsweep.corpus.config import ReasoningSource, ReasoningTask
from imlsweep.corpus.task import Example, InvalidTask, SourceTask, TaskProblem

DEFINITIONS = {"rationale_and_answer": "Answer the following question by reasoning step by step.",
               "answer": "Answer the following question."}
TSV_COLUMNS = ("question", "answer", "chain of thought")


def target_text(rationale: str, answer: str, target: str) -> str:
    answer = answer.strip()
    if target == "answer":
        return answer
    stop = "" if answer.endswith((".", "!", "?")) else "."
    return f"{rationale.strip()} The answer is {answer}{stop}"


def split_file(folder: Path, dataset: str, split: str) -> Path:
    found = [folder / f"{dataset}_{split}{suffix}" for suffix in (".tsv", ".jsonl", ".parquet")
             if (folder / f"{dataset}_{split}{suffix}").is_file()]
    if len(found) != 1:
        problem = "no" if not found else "more than one"
        raise TaskProblem(f"splits.{split}", f"{problem} {dataset}_{split}.tsv|.jsonl|.parquet file here", str(folder))
    return found[0]


def qa_rows(path: Path, source: ReasoningSource) -> list[tuple[str, str, str, str]]:
    """(where, question, rationale, answer) of each example of a file."""
    if path.suffix == ".tsv":
        found = []
        for number, columns in read_tsv(path):
            if len(columns) != len(TSV_COLUMNS):
                raise TaskProblem(f"line {number}", f"expected {', '.join(TSV_COLUMNS)} separated by tabs, got "
                                  f"{len(columns)} column(s)", str(path))
            question, answer, rationale = (column.replace("\\n", "\n") for column in columns)
            found.append((f"line {number}", question, rationale, answer))
        return found
    fields = source.fields
    found = []
    for index, row in enumerate(read_rows(path)):
        where = f"row {index}"
        try:
            found.append((where, require_text(row.get(fields.question), f"{where}.{fields.question}"),
                          require_text(row.get(fields.rationale, ""), f"{where}.{fields.rationale}"),
                          require_text(row.get(fields.answer), f"{where}.{fields.answer}")))
        except TaskProblem as problem:
            raise TaskProblem(problem.field, problem.reason, str(path)) from None
    return found


def build_task(task: ReasoningTask, source: ReasoningSource) -> SourceTask:
    task_id = task.task_id or task.dataset
    folder = Path(source.path)
    examples = []
    for split_name, corpus_split in source.splits.items():
        path = split_file(folder, task.dataset, split_name)
        for index, (where, question, rationale, answer) in enumerate(qa_rows(path, source)):
            if source.target == "rationale_and_answer" and not rationale.strip():
                raise TaskProblem(f"{where}: rationale", "empty (target rationale_and_answer needs one)", str(path))
            if not answer.strip():
                raise TaskProblem(f"{where}: answer", "empty", str(path))
            examples.append(Example(input=question.strip(), outputs=[target_text(rationale, answer, source.target)],
                                    example_id=f"{task_id}-{split_name}-{index}", split=corpus_split))
    if not examples:
        raise TaskProblem("splits", "the dataset's files have no examples")
    return SourceTask(
        task_id=task_id,
        benchmark=source.benchmark,
        source_file=str(folder / task.dataset),
        category=task.category,
        data_source=task.data_source or task.dataset,
        instruction_type="task",
        definition=source.definition or DEFINITIONS[source.target],
        language=source.language,
        examples=examples,
        languages=(source.language,),
    )


def read_reasoning(source: ReasoningSource) -> Iterator[SourceTask | InvalidTask]:
    for task in source.tasks:
        try:
            yield build_task(task, source)
        except TaskProblem as problem:
            yield problem.invalid(str(Path(source.path) / task.dataset), task.task_id or task.dataset)
