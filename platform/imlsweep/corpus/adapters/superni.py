"""SuperNI adapter: a directory in the allenai/natural-instructions layout.

`tasks/<task>.json` holds Definition, Positive/Negative Examples (with explanations), Instances (each
with a list of outputs), Categories, Source and languages. The split files under `split_dir` say which
tasks are eval tasks (test_tasks.txt) and which are left out (excluded_tasks.txt); all others train.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imlsweep.corpus.adapters.fields import read_json_text, require_text, require_text_list
from imlsweep.corpus.config import SuperNISource
from imlsweep.corpus.schema import DATA_SOURCE_SEPARATOR
from imlsweep.corpus.task import Example, InvalidTask, SkippedTask, SourceTask, TaskProblem
from imlsweep.errors import UserError

SPLIT_FILES = {"train": "train_tasks.txt", "test": "test_tasks.txt", "excluded": "excluded_tasks.txt"}


def read_task_list(path: Path) -> list[str]:
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def read_split_files(split_dir: Path) -> dict[str, set[str]]:
    if not split_dir.is_dir():
        raise UserError(f"{split_dir}: no SuperNI split folder (set split_dir, or split.use_source_splits: false)")
    return {role: set(read_task_list(split_dir / name)) for role, name in SPLIT_FILES.items()}


def parse_demonstrations(value: Any, field: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TaskProblem(field, f"expected a list of examples, got {type(value).__name__}")
    demonstrations = []
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(item, dict):
            raise TaskProblem(where, "expected an object with input, output, explanation")
        explanation = item.get("explanation", "")
        demonstrations.append(
            {
                "input": require_text(item.get("input"), f"{where}.input"),
                "output": require_text(item.get("output"), f"{where}.output"),
                "explanation": require_text(explanation, f"{where}.explanation") if explanation is not None else "",
            }
        )
    return demonstrations


def checked_instance(item: Any, index: int, task_id: str) -> Example:
    where = f"Instances[{index}]"
    if not isinstance(item, dict):
        raise TaskProblem(where, "expected an object with id, input, output")
    if "output" not in item:
        raise TaskProblem(f"{where}.output", "missing")
    example_id = item.get("id", f"{task_id}-{index}")
    return Example(input=require_text(item.get("input"), f"{where}.input"),
                   outputs=require_text_list(item["output"], f"{where}.output"),
                   example_id=require_text(example_id, f"{where}.id"))


def parse_instances(value: Any, task_id: str) -> list[Example]:
    if value is None:
        raise TaskProblem("Instances", "missing")
    if not isinstance(value, list) or not value:
        raise TaskProblem("Instances", "expected a non-empty list of instances")
    examples = []
    for index, item in enumerate(value):
        # The well-formed instance, checked inline (millions of them in the full benchmark); anything else
        # goes through `checked_instance`, which names what is wrong.
        if type(item) is dict:
            text, outputs, example_id = item.get("input"), item.get("output"), item.get("id", None)
            if (type(text) is str and type(outputs) is list and outputs and type(example_id) is str
                    and all(type(output) is str for output in outputs)):
                examples.append(Example(text, outputs, example_id))
                continue
        examples.append(checked_instance(item, index, task_id))
    return examples


def task_languages(task: dict) -> tuple[str, ...]:
    languages: list[str] = []
    for key in ("Input_language", "Output_language", "Instruction_language"):
        for language in require_text_list(task.get(key, ["English"]), key):
            if language not in languages:
                languages.append(language)
    return tuple(languages)


def parse_task(path: Path, benchmark: str, source_role: str | None) -> SourceTask:
    task_id = path.stem
    task = read_json_text(path)
    if not isinstance(task, dict):
        raise TaskProblem("<file>", "expected a JSON object at the top level")
    if "Definition" not in task:
        raise TaskProblem("Definition", "missing")
    definition = task["Definition"]
    definition = "\n".join(require_text_list(definition, "Definition")) if isinstance(definition, list) else \
        require_text(definition, "Definition")
    if "Categories" not in task:
        raise TaskProblem("Categories", "missing")
    categories = require_text_list(task["Categories"], "Categories")
    sources = require_text_list(task.get("Source", [task_id]), "Source")
    languages = task_languages(task)
    return SourceTask(
        task_id=task_id,
        benchmark=benchmark,
        source_file=str(path),
        category=categories[0],
        data_source=DATA_SOURCE_SEPARATOR.join(sources),
        instruction_type="task",
        definition=definition,
        language=languages[0] if len(languages) == 1 else "-".join(languages),
        examples=parse_instances(task.get("Instances"), task_id),
        positive_examples=parse_demonstrations(task.get("Positive Examples"), "Positive Examples"),
        negative_examples=parse_demonstrations(task.get("Negative Examples"), "Negative Examples"),
        source_role=source_role,
        languages=languages,
    )


def read_superni(source: SuperNISource, use_source_splits: bool = True) -> Iterator[SourceTask | InvalidTask | SkippedTask]:
    root = Path(source.path)
    tasks_dir = root / "tasks"
    if not tasks_dir.is_dir():
        raise UserError(f"{root}: not a SuperNI folder (no tasks/ inside)")
    splits = read_split_files(root / source.split_dir) if use_source_splits else {}
    for path in sorted(tasks_dir.glob("*.json")):
        task_id = path.stem
        if task_id in splits.get("excluded", ()):
            yield SkippedTask(task_id, f"listed in {SPLIT_FILES['excluded']}")
            continue
        role = "test" if task_id in splits.get("test", ()) else None
        try:
            yield parse_task(path, source.benchmark, role)
        except TaskProblem as problem:
            yield InvalidTask(str(path), task_id, problem.field, problem.reason)
