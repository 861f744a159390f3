"""Pure split logic: a task's role and level, which of its instances are test/validation/train, caps."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from imlsweep.corpus.config import CorpusConfig


@dataclass(frozen=True)
class TaskRole:
    split: str  # the manifest split: train (a training task), validation or test (an eval task)
    level: str


def task_role(task_id: str, category: str, source_role: str | None, config: CorpusConfig) -> TaskRole:
    """Eval tasks: named in the config, in a fully held-out category, or listed by the source's split
    files. A held-out category makes the level fully_held_out; other eval tasks are unseen tasks of seen
    categories (partially_supervised). Everything else trains (fully_supervised)."""
    split_config = config.split
    held_out_categories = {name.strip().lower() for name in split_config.fully_held_out_categories}
    in_held_out_category = category.strip().lower() in held_out_categories
    level = "fully_held_out" if in_held_out_category else "partially_supervised"
    if task_id in split_config.validation_tasks:
        return TaskRole("validation", level)
    if (task_id in split_config.held_out_tasks or in_held_out_category
            or (source_role == "test" and split_config.use_source_splits)):
        return TaskRole("test", level)
    return TaskRole("train", "fully_supervised")


def held_out_sizes(task_id: str, role: TaskRole, config: CorpusConfig) -> tuple[int, int]:
    """(test, validation) instances a task keeps out of its training pool."""
    split_config = config.split
    if role.split != "train":
        return split_config.eval_test_size, split_config.eval_validation_size
    if split_config.supervised_tasks is not None and task_id not in split_config.supervised_tasks:
        return 0, 0
    return split_config.supervised_test_size, split_config.supervised_validation_size


def instance_splits(example_ids: list[str], test_size: int, validation_size: int,
                    source_splits: list[str | None] | None = None) -> list[str]:
    """The first `test_size` examples (in source order) are test, the next `validation_size` validation,
    the rest train. Rows of one example (several templates) share its split. A row whose source gives
    its split (`source_splits[i]`, from the source's own train / dev / test files) keeps it and takes no
    place in that order."""
    fixed = source_splits or [None] * len(example_ids)
    rank: dict[str, int] = {}
    splits = []
    for example_id, source_split in zip(example_ids, fixed):
        if source_split is not None:
            splits.append(source_split)
            continue
        position = rank.setdefault(example_id, len(rank))
        if position < test_size:
            splits.append("test")
        elif position < test_size + validation_size:
            splits.append("validation")
        else:
            splits.append("train")
    return splits


def task_seed(seed: int, task_id: str) -> list[int]:
    """A per-task seed that does not depend on which other tasks are built, or on PYTHONHASHSEED."""
    digest = hashlib.sha256(task_id.encode("utf-8")).digest()
    return [seed, int.from_bytes(digest[:8], "little")]


def capped_indices(n_rows: int, cap: int, seed: int, task_id: str) -> list[int]:
    """At most `cap` of a task's rows, chosen at random with the seed, kept in source order."""
    if n_rows <= cap:
        return list(range(n_rows))
    rng = np.random.default_rng(task_seed(seed, task_id))
    return sorted(rng.choice(n_rows, size=cap, replace=False).tolist())
