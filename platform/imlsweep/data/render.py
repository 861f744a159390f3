"""Rendering a task's rows into prompts: the encoding, its demonstrations and the chosen target.

`render_examples` is what evaluation uses for prompts; the training pipeline uses `TaskPrompter`
directly on the rows it draws. Both read a task through the corpus store, one task at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from imlsweep.corpus.schema import TASK_LEVEL_COLUMNS
from imlsweep.data.demonstrations import (
    DemonstrationsConfig, demonstration_order, pick_demonstrations, shots_for_example,
)
from imlsweep.data.encodings import CountTokens, EncodingConfig, Prompt, encode_prompt
from imlsweep.data.seeding import keyed_rng
from imlsweep.errors import UserError


@dataclass(frozen=True)
class RenderedExample:
    task_id: str
    example_id: str
    benchmark: str
    category: str
    level: str
    source: str
    target: str  # the reference trained on (seeded choice among outputs)
    outputs: list[str]  # every reference, for scoring
    candidates: list[str] | None  # options, for rank classification


def split_positions(table: pa.Table, split: str) -> np.ndarray:
    """Indices into `table` of the task's rows of one split, in source order (so "the first N" is
    reproducible). Only the key columns are touched: a task's rows are taken later, the drawn ones."""
    source_index = table.column("source_index").to_numpy()
    if np.all(source_index[1:] > source_index[:-1]):  # as tasks are written: the sort is the identity
        order = np.arange(len(source_index))
    else:
        order = pc.sort_indices(table.select(["source_index", "template_id"]),
                                sort_keys=[("source_index", "ascending"), ("template_id", "ascending")]).to_numpy()
    in_split = pc.equal(table["split"], split).to_numpy(zero_copy_only=False)
    return order[in_split[order]]  # the sort is stable: the split's rows keep their order among equals


def task_rows(table: pa.Table, indices: np.ndarray) -> list[dict[str, Any]]:
    """Rows `indices` of a task's table as dicts. The task-level columns are converted once, from the
    first row, and shared by every row: converting the definition and demonstrations again on each row
    was most of the cost of rendering a few rows of a task."""
    if not len(indices):
        return []
    task_level = [name for name in TASK_LEVEL_COLUMNS if name in table.column_names]
    shared = table.select(task_level).slice(0, 1).to_pylist()[0]
    own = [name for name in table.column_names if name not in shared]
    return [shared | row for row in table.select(own).take(indices).to_pylist()]


def target_index(references: int, seed: int, task_id: str, example_id: str) -> int:
    """Which of an example's references it trains on: a seeded draw per (seed, task, example)."""
    return 0 if references == 1 else keyed_rng(seed, "target", task_id, example_id).randrange(references)


def choose_target(row: dict[str, Any], seed: int) -> str:
    outputs = row.get("outputs") or []
    if not outputs:
        raise UserError(f"task {row['task_id']}: example {row['example_id']}: field outputs: no reference")
    return outputs[target_index(len(outputs), seed, row["task_id"], row["example_id"])]


class TaskPrompter:
    """Renders the examples of one task. Its demonstrations are drawn once from the task's train pool
    (`pool`: row indices into `table`, in source order), so every example of the task shares them
    (minus itself when it is one of them)."""

    def __init__(self, task_id: str, table: pa.Table, pool: np.ndarray, encoding: EncodingConfig,
                 demonstrations: DemonstrationsConfig, seed: int, count_tokens: CountTokens | None = None,
                 max_source_length: int | None = None):
        self.task_id = task_id
        self.encoding = encoding
        self.demonstrations = demonstrations
        self.seed = seed
        self.count_tokens = count_tokens
        self.max_source_length = max_source_length
        self.demo_order = demonstration_order(len(pool), demonstrations.shots, seed, task_id)
        self.demo_rows = dict(zip(self.demo_order, task_rows(table, pool[self.demo_order])))

    def prompt(self, row: dict[str, Any], pool_position: int | None) -> Prompt:
        k = shots_for_example(self.demonstrations, self.seed, self.task_id, row["example_id"])
        demos = [self.demo_rows[p] for p in pick_demonstrations(self.demo_order, k, pool_position)]
        return encode_prompt(row, choose_target(row, self.seed), demos, self.encoding, seed=self.seed,
                             separator=self.demonstrations.separator, count_tokens=self.count_tokens,
                             max_source_length=self.max_source_length)


def render_examples(corpus: Any, task_ids: Sequence[str], split: str, encoding: EncodingConfig | str, *, seed: int,
                    max_per_task: int | None = None, shots: int = 0,
                    demonstrations: DemonstrationsConfig | None = None,
                    count_tokens: CountTokens | None = None,
                    max_source_length: int | None = None) -> list[RenderedExample]:
    """The first `max_per_task` rows (source order) of `split` of each task, rendered with `encoding`
    and `shots` demonstrations drawn with the seed from the task's train rows."""
    if isinstance(encoding, str):
        encoding = EncodingConfig(name=encoding)
    demonstrations = demonstrations or DemonstrationsConfig(shots=shots)
    examples = []
    for task_id in task_ids:
        table = corpus.read_task(task_id)
        rows = task_rows(table, split_positions(table, split)[:max_per_task])
        prompter = TaskPrompter(task_id, table, split_positions(table, "train"), encoding, demonstrations, seed,
                                count_tokens, max_source_length)
        for position, row in enumerate(rows):
            prompt = prompter.prompt(row, position if split == "train" else None)
            examples.append(RenderedExample(
                task_id=task_id, example_id=row["example_id"], benchmark=row["benchmark"], category=row["category"],
                level=row["level"], source=prompt.source, target=prompt.target, outputs=list(row["outputs"]),
                candidates=None if row.get("candidates") is None else list(row["candidates"])))
    return examples
