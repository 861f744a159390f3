"""OPT-IML Table 1 statistics of a built corpus: per benchmark and for train / dev / test, the number
of categories, tasks and examples, prompts per task and prompt length mean and std.

A prompt's length is its definition plus its input, counted in whitespace words, or in tokens when a
tokenizer is given (the definition is tokenized once per task). The groups: a benchmark is every row
of its tasks; `train` the training pool rows of training tasks; `dev` and `test` the validation and
test rows of every task.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from imlsweep.corpus.store import Corpus

LengthFn = Callable[[list[str]], np.ndarray]
STAT_COLUMNS = ["categories", "tasks", "examples", "prompts_per_task", "prompt_len_mean", "prompt_len_std"]
SPLIT_GROUPS = {"train": "train", "dev": "validation", "test": "test"}


@dataclass
class GroupStats:
    categories: set[str] = field(default_factory=set)
    templates_per_task: list[int] = field(default_factory=list)
    examples: int = 0
    length_sum: float = 0.0
    length_sum_sq: float = 0.0

    def add(self, category: str, n_templates: int, lengths: np.ndarray) -> None:
        if len(lengths) == 0:
            return
        self.categories.add(category)
        self.templates_per_task.append(n_templates)
        self.examples += len(lengths)
        self.length_sum += float(lengths.sum())
        self.length_sum_sq += float((lengths.astype(np.float64) ** 2).sum())

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


def word_lengths(texts: list[str]) -> np.ndarray:
    words = pc.utf8_split_whitespace(pa.array(texts, type=pa.string()))
    return pc.list_value_length(words).to_numpy(zero_copy_only=False).astype(np.int64)


def tokenizer_lengths(name: str) -> LengthFn:
    from imlsweep.data.tokenizer import cached_tokenizer

    tokenizer = cached_tokenizer(name)

    def lengths(texts: list[str]) -> np.ndarray:
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        return np.array([len(ids) for ids in encoded], dtype=np.int64)

    return lengths


def template_count(template_ids: pa.ChunkedArray) -> int:
    """Distinct prompt templates; rows without a template id use the task's definition (one prompt)."""
    return max(1, pc.count_distinct(template_ids, mode="only_valid").as_py())


def corpus_stats(corpus: Corpus, tokenizer: str | None = None) -> dict:
    length_of = tokenizer_lengths(tokenizer) if tokenizer else word_lengths
    benchmarks: dict[str, GroupStats] = {}
    splits = {name: GroupStats() for name in SPLIT_GROUPS}
    for task in corpus.manifest.itertuples(index=False):
        table = corpus.read_task(task.task_id, columns=["definition", "input", "template_id", "split"])
        if table.num_rows == 0:
            continue
        definition_length = int(length_of([table.column("definition")[0].as_py()])[0])
        lengths = length_of(table.column("input").to_pylist()) + definition_length
        row_splits = table.column("split").to_numpy(zero_copy_only=False)
        templates = template_count(table.column("template_id"))
        benchmarks.setdefault(task.benchmark, GroupStats()).add(task.category, templates, lengths)
        for group, row_split in SPLIT_GROUPS.items():
            if group == "train" and task.split != "train":
                continue
            mask = row_splits == row_split
            splits[group].add(task.category, templates, lengths[mask])
    return {
        "unit": f"tokens ({tokenizer})" if tokenizer else "whitespace words",
        "benchmarks": {name: benchmarks[name].as_row() for name in sorted(benchmarks)},
        "splits": {name: group.as_row() for name, group in splits.items()},
    }
