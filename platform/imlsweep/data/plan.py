"""A mixture resolved against a corpus manifest: every source's size, rate, share and example count.

`plan_mixture` reads only the manifest (no row data), so `mixture explain` is instant and the data
pipeline and the explanation can never disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd

from imlsweep.data.mixing import (
    allocate_counts, eps_mixing_rates, is_capped, mixed_order, normalise, task_shares,
)
from imlsweep.data.mixture import GROUP_COLUMNS, PROPORTION_KEYS, GroupKind, MixtureConfig
from imlsweep.data.sampling import largest_categories, nested_task_subset
from imlsweep.data.texts import read_text_documents
from imlsweep.errors import UserError

TEXT_BENCHMARK = "text"
SPLIT_SIZE_COLUMN = {"train": "n_train", "validation": "n_validation", "test": "n_test"}


@dataclass(frozen=True)
class SourcePlan:
    """One source of the stream: a corpus task, or an add-on text file (source_id "addon:<name>")."""

    source_id: str
    benchmark: str
    category: str
    pool_size: int  # rows of the trained split
    sampled: int  # n = min(samples_per_task, pool_size)
    rate: float  # seqio rate before normalisation: min(n, eps) ** (1 / T)
    share: float  # of the whole stream
    expected_examples: int
    capped: bool
    addon: str | None
    loss: Literal["target", "sequence"]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MixturePlan:
    sources: list[SourcePlan]
    total_examples: int
    seed: int

    def stream_sources(self) -> np.ndarray:
        """Index into `sources` of every example of the stream, in stream order."""
        return mixed_order([s.expected_examples for s in self.sources], self.seed)


def select_tasks(mixture: MixtureConfig, manifest: pd.DataFrame, exclude_benchmarks: set[str]) -> pd.DataFrame:
    if mixture.tasks == "all":
        chosen = manifest[(manifest["split"] == "train") & ~manifest["benchmark"].isin(exclude_benchmarks)]
    else:
        known = set(manifest["task_id"])
        unknown = [t for t in mixture.tasks if t not in known]
        if unknown:
            raise UserError(f"mixture.tasks: not in the corpus: {', '.join(unknown)}")
        chosen = manifest[manifest["task_id"].isin(set(mixture.tasks))]
    if mixture.category_subset is not None:
        categories = largest_categories(dict(zip(chosen["task_id"], chosen["category"])),
                                        mixture.category_subset.size, mixture.category_subset.required)
        chosen = chosen[chosen["category"].isin(categories)]
    if mixture.task_subset is not None:
        subset = nested_task_subset(list(chosen["task_id"]), mixture.task_subset.size,
                                    mixture.task_subset.required, mixture.seed)
        chosen = chosen[chosen["task_id"].isin(subset)]
    return chosen.sort_values("task_id")


def sampled_size(pool_size: int, samples: int | str) -> int:
    return pool_size if samples == "all" else min(int(samples), pool_size)


def plan_mixture(mixture: MixtureConfig, manifest: pd.DataFrame) -> MixturePlan:
    addon_benchmarks = {a.benchmark for a in mixture.addons if a.benchmark is not None}
    size_column = SPLIT_SIZE_COLUMN[mixture.train_split]
    kind, proportions = mixture.group_proportions() or ("benchmark", None)
    column = GROUP_COLUMNS[kind]
    # `tasks: all` under a proportion vector means the vector's groups: a benchmark it gives no weight
    # (reasoning, outside OPT-IML's vector, or a 0) is not trained on, as OPT-IML's sweeps left reasoning out.
    candidates = (manifest if proportions is None or mixture.tasks != "all"
                  else manifest[manifest[column].map(lambda group: proportions.get(group, 0.0) > 0)])
    tasks = select_tasks(mixture, candidates, addon_benchmarks)
    if tasks.empty:
        raise UserError("mixture: selects no task of the corpus")
    reserved = sum(a.fraction for a in mixture.addons)
    sizes = {t: sampled_size(int(n), mixture.samples_per_task) for t, n in zip(tasks["task_id"], tasks[size_column])}
    if sum(sizes.values()) == 0:
        raise UserError(f"mixture: the selected tasks have no {mixture.train_split} rows")
    benchmarks = dict(zip(tasks["task_id"], tasks["benchmark"]))
    shares = task_shares(dict(zip(tasks["task_id"], tasks[column])), sizes, eps=mixture.eps,
                         temperature=mixture.temperature, proportions=proportions, reserved=reserved,
                         key=PROPORTION_KEYS[kind])
    rows = [(t, benchmarks[t], c, int(n), None, "target") for t, c, n in
            zip(tasks["task_id"], tasks["category"], tasks[size_column])]

    for addon in mixture.addons:
        if addon.texts is not None:
            pool = len(read_text_documents(addon.texts))
            source_id = f"addon:{addon.name}"
            sizes[source_id], shares[source_id] = pool, addon.fraction
            rows.append((source_id, TEXT_BENCHMARK, addon.name, pool, addon.name, addon.loss))
            continue
        members = manifest[manifest["benchmark"] == addon.benchmark].sort_values("task_id")
        if members.empty:
            raise UserError(f"mixture.addons.{addon.name}.benchmark: no task of benchmark {addon.benchmark!r} "
                            "in the corpus")
        member_sizes = {t: sampled_size(int(n), mixture.samples_per_task)
                        for t, n in zip(members["task_id"], members[size_column])}
        member_rates = eps_mixing_rates(member_sizes, mixture.eps, mixture.temperature)
        for task, share in normalise(member_rates).items():
            sizes[task], shares[task] = member_sizes[task], share * addon.fraction
        rows += [(t, b, c, int(n), addon.name, addon.loss) for t, b, c, n in
                 zip(members["task_id"], members["benchmark"], members["category"], members[size_column])]

    main_examples = sum(sizes[t] for t in tasks["task_id"])
    total = mixture.total_examples or max(1, round(mixture.stream_multiple * main_examples / (1.0 - reserved)))
    counts = allocate_counts(shares, total)
    rates = eps_mixing_rates(sizes, mixture.eps, mixture.temperature)
    sources = [SourcePlan(source_id=s, benchmark=b, category=c, pool_size=pool, sampled=sizes[s], rate=rates[s],
                          share=shares[s], expected_examples=counts[s], capped=is_capped(sizes[s], mixture.eps),
                          addon=addon, loss=loss)
               for s, b, c, pool, addon, loss in rows]
    return MixturePlan(sources=sources, total_examples=total, seed=mixture.seed)


def group_shares(plan: MixturePlan, kind: GroupKind) -> dict[str, float]:
    """The task mixture's share of each group (benchmark, category or task), add-ons left out, summing to 1."""
    shares: dict[str, float] = {}
    for source in plan.sources:
        if source.addon is None:
            group = {"benchmark": source.benchmark, "category": source.category, "task": source.source_id}[kind]
            shares[group] = shares.get(group, 0.0) + source.share
    return normalise(shares)


def benchmark_summary(plan: MixturePlan) -> list[dict]:
    """Per benchmark (add-ons by name): tasks, capped tasks, share and expected examples."""
    groups: dict[str, dict] = {}
    for source in plan.sources:
        key = source.benchmark if source.addon is None else f"addon:{source.addon}"
        group = groups.setdefault(key, {"benchmark": key, "tasks": 0, "capped_tasks": 0, "share": 0.0,
                                        "expected_examples": 0})
        group["tasks"] += 1
        group["capped_tasks"] += int(source.capped)
        group["share"] += source.share
        group["expected_examples"] += source.expected_examples
    return sorted(groups.values(), key=lambda g: g["benchmark"])
