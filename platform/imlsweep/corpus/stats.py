"""OPT-IML Table 1 statistics of a built corpus: per benchmark and for train / dev / test, the number
of categories, tasks and examples, prompts per task and prompt length mean and std.

A prompt's length is its definition plus its input, counted in whitespace words, or in tokens when a
tokenizer is given (the definition is tokenized once per task). The groups: a benchmark is every row
of its tasks; `train` the training pool rows of training tasks; `dev` and `test` the validation and
test rows of every task.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from imlsweep.corpus.store import Corpus

Texts = list[str] | pa.Array | pa.ChunkedArray  # Arrow columns are measured without Python strings
LengthFn = Callable[[Texts], np.ndarray]
STAT_COLUMNS = ["categories", "tasks", "examples", "prompts_per_task", "prompt_len_mean", "prompt_len_std"]
SPLIT_GROUPS = {"train": "train", "dev": "validation", "test": "test"}
STATS_COLUMNS = ["definition", "input", "template_id", "split"]  # what a task's share is computed from


@dataclass(frozen=True)
class Lengths:
    """Prompt lengths of some rows: how many, their sum and their sum of squares."""

    count: int
    total: float
    squares: float

    @classmethod
    def of(cls, lengths: np.ndarray) -> "Lengths":
        return cls(len(lengths), float(lengths.sum()), float((lengths.astype(np.float64) ** 2).sum()))


@dataclass(frozen=True)
class TaskStats:
    """One task's share of the statistics: its rows' lengths per group (`benchmark`, `train`, `dev`,
    `test`), so the corpus's figures add up task by task without reading a task twice."""

    benchmark: str
    category: str
    templates: int
    groups: dict[str, Lengths]


@dataclass
class GroupStats:
    categories: set[str] = field(default_factory=set)
    templates_per_task: list[int] = field(default_factory=list)
    examples: int = 0
    length_sum: float = 0.0
    length_sum_sq: float = 0.0

    def add(self, category: str, n_templates: int, lengths: Lengths) -> None:
        if lengths.count == 0:
            return
        self.categories.add(category)
        self.templates_per_task.append(n_templates)
        self.examples += lengths.count
        self.length_sum += lengths.total
        self.length_sum_sq += lengths.squares

    def as_row(self) -> dict:
        mean = self.length_sum / self.examples if self.examples else 0.0
        variance = self.length_sum_sq / self.examples - mean**2 if self.examples else 0.0
        return {
            "categories": len(self.categories),
            "tasks": len(self.templates_per_task),
            "examples": self.examples,
            "prompts_per_task": round(float(np.mean(self.templates_per_task)), 3) if self.templates_per_task else 0.0,
            "prompt_len_mean": round(mean, 2),
            "prompt_len_std": round(math.sqrt(max(variance, 0.0)), 2),
        }


def word_lengths(texts: Texts) -> np.ndarray:
    texts = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, type=pa.string())
    return pc.list_value_length(pc.utf8_split_whitespace(texts)).to_numpy(zero_copy_only=False).astype(np.int64)


def tokenizer_lengths(name: str) -> LengthFn:
    from imlsweep.data.tokenizer import cached_tokenizer

    tokenizer = cached_tokenizer(name)

    def lengths(texts: Texts) -> np.ndarray:
        texts = texts.to_pylist() if isinstance(texts, (pa.Array, pa.ChunkedArray)) else texts
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        return np.array([len(ids) for ids in encoded], dtype=np.int64)

    return lengths


def template_count(template_ids: pa.ChunkedArray) -> int:
    """Distinct prompt templates; rows without a template id use the task's definition (one prompt)."""
    return max(1, pc.count_distinct(template_ids, mode="only_valid").as_py())


def task_stats(benchmark: str, category: str, task_split: str, table: pa.Table,
               length_of: LengthFn = word_lengths) -> TaskStats | None:
    """A task's share from its rows (`definition`, `input`, `template_id`, `split` columns); None when it
    has none. `task_split` is the task's manifest split: only training tasks count in `train`."""
    if table.num_rows == 0:
        return None
    definition_length = int(length_of([table.column("definition")[0].as_py()])[0])
    lengths = length_of(table.column("input")) + definition_length
    row_splits = table.column("split").to_numpy(zero_copy_only=False)
    groups = {"benchmark": Lengths.of(lengths)}
    for group, row_split in SPLIT_GROUPS.items():
        if group != "train" or task_split == "train":
            groups[group] = Lengths.of(lengths[row_splits == row_split])
    return TaskStats(benchmark, category, template_count(table.column("template_id")), groups)


def combine_stats(tasks: Iterable[TaskStats | None], unit: str = "whitespace words") -> dict:
    """The statistics of a corpus from its tasks' shares."""
    benchmarks: dict[str, GroupStats] = {}
    splits = {name: GroupStats() for name in SPLIT_GROUPS}
    for task in tasks:
        if task is None:
            continue
        for group, lengths in task.groups.items():
            stats = benchmarks.setdefault(task.benchmark, GroupStats()) if group == "benchmark" else splits[group]
            stats.add(task.category, task.templates, lengths)
    return {
        "unit": unit,
        "benchmarks": {name: benchmarks[name].as_row() for name in sorted(benchmarks)},
        "splits": {name: group.as_row() for name, group in splits.items()},
    }


def corpus_stats(corpus: Corpus, tokenizer: str | None = None) -> dict:
    length_of = tokenizer_lengths(tokenizer) if tokenizer else word_lengths
    tasks = (task_stats(task.benchmark, task.category, task.split,
                        corpus.read_task(task.task_id, columns=STATS_COLUMNS), length_of)
             for task in corpus.manifest.itertuples(index=False))
    return combine_stats(tasks, f"tokens ({tokenizer})" if tokenizer else "whitespace words")
