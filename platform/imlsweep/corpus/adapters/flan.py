"""Flan Collection adapter: the exported submixtures (Flan 2021, T0, NIv2, CoT, Dialog), one row per
(example, template) with `inputs`, `targets`, `task_name`, `task_source` and `template_type`, in JSON
Lines or Parquet shards; rows are grouped back into tasks by `task_name`.

Row fields: `input` <- inputs, `outputs` <- [targets], `template_id` <- template_type (zs_opt,
zs_noopt, fs_opt, fs_noopt: zero- or few-shot, with or without the answer options in the prompt; the
spellings without the underscore that FLAN's code also writes are read as the same types),
`candidates` <- the last options list in the input (a line ending in ':' then '- option' lines, as
FLAN writes its "OPTIONS:"), when the target is one of them (off with `candidates_from_options:
false`), `example_id` `<task>-<row>` (the export keeps no source example id). `category`, `data_source` and `definition` come from the metadata YAML
keyed by task_name (`data_source` defaults to the task_name). Instance-level instructions.

The kept rows of every shard (after the task_sources filter) are held in memory as Arrow columns until
the task is built; a task of another task_source is listed as left out. A row with an unknown
template type rejects its task, naming the shard and row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from imlsweep.config import load_config
from imlsweep.corpus.adapters.files import read_rows
from imlsweep.corpus.adapters.records import MetadataFile, TaskMetadata
from imlsweep.corpus.config import FlanSource
from imlsweep.corpus.task import Example, InvalidTask, SkippedTask, SourceTask, TaskProblem
from imlsweep.errors import UserError

COLUMNS = ("inputs", "targets", "task_name", "task_source", "template_type")
TEMPLATE_TYPES = {"zs_opt": "zs_opt", "zs_noopt": "zs_noopt", "fs_opt": "fs_opt", "fs_noopt": "fs_noopt",
                  "zsopt": "zs_opt", "zsnoopt": "zs_noopt", "fsopt": "fs_opt", "fsnoopt": "fs_noopt"}
UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._+-]")


def shard_files(source: FlanSource) -> list[Path]:
    path = Path(source.path)
    if path.is_file():
        return [path]
    files = sorted(file for file in path.glob("*") if file.suffix in (".jsonl", ".parquet")) if path.is_dir() else []
    if not files:
        raise UserError(f"{path}: no .jsonl or .parquet shard here (source benchmark {source.benchmark})")
    return files


def read_shard(path: Path, shard_index: int, source: FlanSource) -> tuple[pa.Table, dict[str, str]]:
    """The shard's five columns plus its index and each row's number, kept by task_sources, and the
    task names (-> task source) it leaves out."""
    rows = read_rows(path)
    for number, row in enumerate(rows):
        for column in COLUMNS:
            if not isinstance(row.get(column), str):
                raise TaskProblem(f"row {number}.{column}", "missing" if row.get(column) is None else
                                  "expected a string", str(path))
    table = pa.table({column: pa.array([row[column] for row in rows], pa.string()) for column in COLUMNS})
    table = table.append_column("shard", pa.array([shard_index] * len(rows), pa.int32()))
    table = table.append_column("row", pa.array(range(len(rows)), pa.int64()))
    if source.task_sources is None:
        return table, {}
    keep = pc.is_in(table["task_source"], pa.array(source.task_sources, pa.string()))
    dropped = table.filter(pc.invert(keep))
    return table.filter(keep), dict(zip(dropped["task_name"].to_pylist(), dropped["task_source"].to_pylist()))


def trailing_options(text: str) -> list[str] | None:
    """The last options list in a prompt: a line ending in ':' followed by two or more '- option' lines."""
    lines = text.split("\n")
    found = None
    for start, line in enumerate(lines[:-1]):
        if not line.rstrip().endswith(":"):
            continue
        options = []
        for option in lines[start + 1:]:
            if not option.startswith("- "):
                break
            options.append(option[2:].strip())
        if len(options) >= 2:
            found = options
    return found


def task_id_of(task_name: str, source: FlanSource) -> str:
    return source.task_prefix + UNSAFE_CHARACTERS.sub("_", task_name)


def task_examples(rows: list[dict], task_id: str, shards: list[Path], source: FlanSource) -> list[Example]:
    examples = []
    for row in rows:
        template_type = TEMPLATE_TYPES.get(row["template_type"])
        if template_type is None:
            raise TaskProblem(f"row {row['row']}.template_type",
                              f"unknown template type {row['template_type']!r} (expected zs_opt, zs_noopt, fs_opt "
                              "or fs_noopt)", str(shards[row["shard"]]))
        if source.template_types is not None and template_type not in source.template_types:
            continue
        options = trailing_options(row["inputs"]) if source.candidates_from_options else None
        examples.append(Example(input=row["inputs"], outputs=[row["targets"]], template_id=template_type,
                                candidates=options if options and row["targets"].strip() in options else None,
                                example_id=f"{task_id}-{len(examples)}"))
    return examples


def build_task(task_name: str, rows: list[dict], shards: list[Path], metadata: TaskMetadata | None,
               source: FlanSource, metadata_file: str) -> SourceTask | SkippedTask:
    task_id = task_id_of(task_name, source)
    examples = task_examples(rows, task_id, shards, source)
    if not examples:
        return SkippedTask(task_id, f"no row of the template types {', '.join(source.template_types or [])}")
    if metadata is None or metadata.category is None:
        raise TaskProblem(f"tasks[{task_name!r}].category", "missing (the export has no category)", metadata_file)
    return SourceTask(
        task_id=task_id,
        benchmark=source.benchmark,
        source_file=str(shards[rows[0]["shard"]]),
        category=metadata.category,
        data_source=metadata.data_source or task_name,
        instruction_type=metadata.instruction_type or "instance",
        definition=metadata.definition or "",
        language=metadata.language or source.language,
        examples=examples,
        languages=(metadata.language or source.language,),
    )


def read_flan(source: FlanSource) -> Iterator[SourceTask | InvalidTask | SkippedTask]:
    metadata = load_config(source.metadata, MetadataFile).tasks if source.metadata else {}
    metadata_file = source.metadata or "(no metadata file)"
    shards = shard_files(source)
    tables = []
    left_out: dict[str, str] = {}
    for index, path in enumerate(shards):
        try:
            table, dropped = read_shard(path, index, source)
        except TaskProblem as problem:
            yield problem.invalid(str(path), f"(every task in {path.name})")
            continue
        tables.append(table)
        left_out.update(dropped)
    for task_name, task_source in sorted(left_out.items()):
        yield SkippedTask(task_id_of(task_name, source), f"task_source {task_source!r} not in task_sources")
    if not tables:
        return
    table = pa.concat_tables(tables)
    # Sorted by task name, then shard and row: each task is one contiguous slice, in source order.
    table = table.sort_by([("task_name", "ascending"), ("shard", "ascending"), ("row", "ascending")])
    start = 0
    # value_counts lists the names in order of first appearance: the sorted order, one slice each
    for entry in pc.value_counts(table["task_name"]).to_pylist():
        task_name, count = entry["values"], entry["counts"]
        rows = table.slice(start, count).to_pylist()
        start += count
        try:
            yield build_task(task_name, rows, shards, metadata.get(task_name), source, metadata_file)
        except TaskProblem as problem:
            yield problem.invalid(str(shards[rows[0]["shard"]]), task_id_of(task_name, source))
