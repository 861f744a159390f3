"""`imlsweep corpus build`: sources -> one row schema, category map, caps, splits, removals -> Parquet.

The build writes into a temporary sibling folder and renames it into place only when every task is
valid (or, with `skip_invalid`, after listing the rejected ones in invalid.jsonl), so a corpus folder
that exists is always complete. It runs in one process: adapters stream one task at a time, and a thread
writes each task while the next is read, so memory is bounded by the largest task, not the corpus.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from imlsweep.corpus.adapters import read_source
from imlsweep.corpus.config import CorpusConfig, corpus_config_yaml
from imlsweep.corpus.schema import MANIFEST_SCHEMA, ROW_SCHEMA, TASK_LEVEL_COLUMNS, data_sources
from imlsweep.corpus.splits import TaskRole, capped_indices, held_out_sizes, instance_splits, task_role
from imlsweep.corpus.stats import STATS_COLUMNS, TaskStats, combine_stats, task_stats
from imlsweep.corpus.store import (CONFIG_FILE, INVALID_FILE, MANIFEST_FILE, STATS_FILE, Corpus, task_file)
from imlsweep.corpus.task import InvalidTask, SkippedTask, SourceTask
from imlsweep.errors import UserError

log = logging.getLogger(__name__)
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass
class BuildLog:
    """What the build left out and why: nothing is dropped without a line here (saved in stats.json)."""

    invalid: list[InvalidTask] = field(default_factory=list)
    left_out: dict[str, list[str]] = field(default_factory=dict)

    def leave_out(self, reason: str, task_id: str) -> None:
        self.left_out.setdefault(reason, []).append(task_id)


def read_removals(path: str | None) -> set[str]:
    """Task ids, one a line; `#` starts a comment (the reason a task was removed)."""
    if not path:
        return set()
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{file}: removals file not found (named by the corpus config's `removals`)")
    lines = (line.split("#", 1)[0].strip() for line in file.read_text(encoding="utf-8").splitlines())
    return {line for line in lines if line}


def repeated(value, name: str, n: int) -> pa.Array:
    """A task-level value on each of the task's `n` rows, copied by Arrow rather than converted n times
    (`take`: `pa.repeat` copies strings one at a time)."""
    return pa.array([value], type=ROW_SCHEMA.field(name).type).take(np.zeros(n, dtype=np.int64))


def task_table(task: SourceTask, category: str, role: TaskRole, config: CorpusConfig) -> pa.Table:
    keep = capped_indices(len(task.examples), config.cap_for(task.benchmark), config.seed, task.task_id)
    examples = task.examples if len(keep) == len(task.examples) else [task.examples[index] for index in keep]
    test_size, validation_size = held_out_sizes(task.task_id, role, config)
    splits = instance_splits([example.example_id for example in examples], test_size, validation_size,
                             [example.split for example in examples])
    n = len(examples)
    task_values = {"task_id": task.task_id, "benchmark": task.benchmark, "data_source": task.data_source,
                   "category": category, "instruction_type": task.instruction_type, "definition": task.definition,
                   "positive_examples": task.positive_examples, "negative_examples": task.negative_examples,
                   "level": role.level, "language": task.language}
    columns = {name: repeated(task_values[name], name, n) for name in TASK_LEVEL_COLUMNS} | {
        "template_id": [example.template_id for example in examples],
        "input": [example.input for example in examples],
        "outputs": [example.outputs for example in examples],
        "candidates": [example.candidates for example in examples],
        "split": splits,
        "example_id": [example.example_id for example in examples],
        "source_index": keep,
    }
    return pa.table({name: columns[name] for name in ROW_SCHEMA.names}, schema=ROW_SCHEMA)


def manifest_row(table: pa.Table, task: SourceTask, category: str, role: TaskRole) -> dict:
    splits = table.column("split").to_pylist()
    return {
        "task_id": task.task_id, "benchmark": task.benchmark, "category": category, "split": role.split,
        "level": role.level, "n_examples": table.num_rows, "n_train": splits.count("train"),
        "n_validation": splits.count("validation"), "n_test": splits.count("test"),
        "data_source": task.data_source, "instruction_type": task.instruction_type, "language": task.language,
    }


def check_task(task: SourceTask, category: str, config: CorpusConfig, seen: dict[str, str]) -> InvalidTask | None:
    def invalid(field_name: str, reason: str) -> InvalidTask:
        return InvalidTask(task.source_file, task.task_id, field_name, reason)

    if task.task_id in seen:
        return invalid("task_id", f"duplicate task id (also read from {seen[task.task_id]})")
    if not SAFE_NAME.match(task.task_id):
        return invalid("task_id", "not usable as a file name (letters, digits, . _ + - only)")
    if not SAFE_NAME.match(task.benchmark):
        return invalid("benchmark", f"{task.benchmark!r} is not usable as a folder name")
    if not category:
        return invalid("category", "empty")
    if config.categories is not None and category.lower() not in {name.lower() for name in config.categories}:
        mapped = f" (mapped from {task.category!r})" if category != task.category else ""
        return invalid("category", f"unknown category {category!r}{mapped}: not in the config's categories")
    return None


def iterate_tasks(config: CorpusConfig) -> Iterator[SourceTask | InvalidTask | SkippedTask]:
    for source in config.sources:
        yield from read_source(source, use_source_splits=config.split.use_source_splits, seed=config.seed)


class Progress:
    """Build progress on stderr: a rich bar on a terminal, a line every 100 tasks otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.count = 0
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task("building corpus", total=None)

    def __enter__(self) -> "Progress":
        if self.bar:
            self.bar.start()
        return self

    def advance(self, task_id: str) -> None:
        self.count += 1
        if self.bar:
            self.bar.update(self.task, advance=1, description=f"building corpus: {task_id}")
        elif self.enabled and self.count % 100 == 0:
            print(f"corpus build: {self.count} tasks written", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.stop()


def drop_shared_sources(manifest: list[dict], staging: Path, config: CorpusConfig, build_log: BuildLog) -> list[dict]:
    """Apply `shared_data_source` to training tasks that share a data source with an eval task."""
    eval_sources: dict[str, str] = {}
    for row in manifest:
        if row["split"] != "train":
            for name in data_sources(row["data_source"]):
                eval_sources.setdefault(name, row["task_id"])
    kept, conflicts = [], []
    for row in manifest:
        shared = sorted(data_sources(row["data_source"]) & eval_sources.keys()) if row["split"] == "train" else []
        if not shared or config.shared_data_source == "keep":
            kept.append(row)
            continue
        conflicts.append(f"{row['task_id']} shares data source {shared[0]!r} with eval task {eval_sources[shared[0]]}")
        if config.shared_data_source == "drop_train":
            task_file(staging, row["benchmark"], row["task_id"]).unlink()
            build_log.leave_out("training task shares a data source with an eval task", row["task_id"])
            kept.append(None)
    if config.shared_data_source == "error" and conflicts:
        raise UserError("training tasks share a data source with eval tasks (shared_data_source: error):\n  "
                        + "\n  ".join(conflicts))
    return [row for row in kept if row is not None]


def prepare_out_dir(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir() or any(out.iterdir()):
        if not overwrite:
            raise UserError(f"{out}: already exists; choose another --out or pass --overwrite")
        if out.is_dir() and not (out / MANIFEST_FILE).is_file():
            raise UserError(f"{out}: exists and is not a corpus; refusing to replace it")


def write_task(table: pa.Table, path: Path, task: SourceTask, category: str, role: TaskRole) -> TaskStats | None:
    """Write a task's Parquet file; its share of the corpus statistics (from the rows in hand, not reread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return task_stats(task.benchmark, category, role.split, table.select(STATS_COLUMNS))


def write_staging(config: CorpusConfig, staging: Path, build_log: BuildLog,
                  progress: bool) -> tuple[list[dict], dict[str, TaskStats | None]]:
    """Read, check and write every task, one at a time: the manifest rows and each task's statistics.
    A thread writes each task (Arrow, outside the GIL) while the next is parsed, so at most two tasks are
    in memory, whatever the corpus's size."""
    removals = read_removals(config.removals)
    seen: dict[str, str] = {}
    manifest: list[dict] = []
    stats: dict[str, Future] = {}  # task id -> its TaskStats, once written
    with Progress(progress) as bar, ThreadPoolExecutor(max_workers=1) as writer:
        writing: Future | None = None
        for item in iterate_tasks(config):
            if isinstance(item, SkippedTask):
                build_log.leave_out(item.reason, item.task_id)
                continue
            if item.task_id in removals:  # a removed task is not built, valid or not
                build_log.leave_out("listed in the removals file", item.task_id)
                continue
            if isinstance(item, InvalidTask):
                build_log.invalid.append(item)
                continue
            category = config.canonical_category(item.category)
            problem = check_task(item, category, config, seen)
            if problem is not None:
                build_log.invalid.append(problem)
                continue
            seen[item.task_id] = item.source_file
            if config.languages is not None and not set(item.languages) <= set(config.languages):
                build_log.leave_out("language not in the config's languages", item.task_id)
                continue
            role = task_role(item.task_id, category, item.source_role, config)
            table = task_table(item, category, role, config)
            if writing is not None:
                writing.result()  # one task written at a time
            writing = writer.submit(write_task, table, task_file(staging, item.benchmark, item.task_id), item,
                                    category, role)
            stats[item.task_id] = writing
            manifest.append(manifest_row(table, item, category, role))
            bar.advance(item.task_id)
    return drop_shared_sources(manifest, staging, config, build_log), {
        task_id: future.result() for task_id, future in stats.items()}


def invalid_message(invalid: list[InvalidTask]) -> str:
    lines = [item.message() for item in invalid]
    return (f"{len(invalid)} invalid task(s); nothing was written (use --skip-invalid to build the valid "
            "tasks and list these in invalid.jsonl):\n  " + "\n  ".join(lines))


def build_corpus(config: CorpusConfig, out_dir: str | Path, *, skip_invalid: bool = False,
                 overwrite: bool = False, progress: bool = False) -> Corpus:
    """Build the corpus `config` describes into `out_dir` (see docs/architecture.md for the layout)."""
    out = Path(out_dir)
    prepare_out_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        build_log = BuildLog()
        manifest, task_stats_by_id = write_staging(config, staging, build_log, progress)
        if build_log.invalid and not skip_invalid:
            raise UserError(invalid_message(build_log.invalid))
        if not manifest:
            raise UserError("no task to build: every task was invalid or left out " + json.dumps(build_log.left_out))
        manifest.sort(key=lambda row: row["task_id"])
        pq.write_table(pa.Table.from_pylist(manifest, schema=MANIFEST_SCHEMA), staging / MANIFEST_FILE)
        (staging / CONFIG_FILE).write_text(corpus_config_yaml(config), encoding="utf-8")
        if skip_invalid:
            with open(staging / INVALID_FILE, "w", encoding="utf-8") as file:
                for item in build_log.invalid:
                    file.write(json.dumps(item.as_record()) + "\n")
        stats = combine_stats(task_stats_by_id[row["task_id"]] for row in manifest)
        stats["build"] = {"invalid": len(build_log.invalid), "left_out": build_log.left_out}
        (staging / STATS_FILE).write_text(json.dumps(stats, indent=2), encoding="utf-8")
        replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for reason, task_ids in build_log.left_out.items():
        log.info("corpus build: %d task(s) left out: %s", len(task_ids), reason)
    return Corpus.open(out)


def replace_dir(staging: Path, out: Path) -> None:
    if out.exists():
        retired = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(retired)
        staging.rename(out)
        shutil.rmtree(retired)
    else:
        staging.rename(out)
