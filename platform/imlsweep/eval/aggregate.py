"""Roll per-task metrics up the OPT-IML way and the sample-efficiency way (pure functions).

OPT-IML (model selection), per shot setting: sub-tasks -> task (the 57 MMLU subjects, the Winobias
variants), then the same task across benchmarks is averaged, then tasks -> columns (category, or
benchmark in the proportions sweep) within each generalization level; the 0-shot and k-shot means
are unweighted means over the columns, each level has its own, and the combined score is the mean
of the shot means. Scores are each task's primary metric: accuracy for rank classification,
ROUGE-L otherwise, averaged together as OPT-IML does.

Sample efficiency (STL/MTL study): per task, per category with the small categories clubbed as
"others", and overall; category and overall are instance means, as the SuperNI scorer reports them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from fnmatch import fnmatchcase
from statistics import fmean
from typing import Any, Iterable, Literal, Mapping, Sequence


OTHERS = "others"


def task_group(task_id: str, task_groups: Mapping[str, Sequence[str]]) -> str:
    """The task a (sub-)task belongs to: the first group with a matching id or glob, else itself."""
    for name, patterns in task_groups.items():
        if any(fnmatchcase(task_id, pattern) for pattern in patterns):
            return name
    return task_id


def _most_common(values: Iterable[str]) -> str:
    counts = Counter(values)
    return min(counts, key=lambda value: (-counts[value], value))


def merge_tasks(tasks: Sequence[Mapping[str, Any]], task_groups: Mapping[str, Sequence[str]],
                across_benchmarks: bool = True) -> list[dict[str, Any]]:
    """Steps 1 and 2: sub-tasks -> task within a benchmark, then the same task across benchmarks."""
    within: dict[tuple[int, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for task in tasks:
        within[(task["shots"], task_group(task["task_id"], task_groups), task["benchmark"])].append(task)
    per_benchmark = [
        {"shots": shots, "task": name, "benchmark": benchmark, "score": fmean(t["score"] for t in members),
         "category": _most_common(t["category"] for t in members),
         "level": _most_common(t["level"] for t in members), "subtasks": sorted(t["task_id"] for t in members)}
        for (shots, name, benchmark), members in within.items()]
    if not across_benchmarks:
        return sorted(per_benchmark, key=lambda t: (t["shots"], t["task"], t["benchmark"]))
    across: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for task in per_benchmark:
        across[(task["shots"], task["task"])].append(task)
    merged = [
        {"shots": shots, "task": name, "benchmark": _most_common(t["benchmark"] for t in members),
         "benchmarks": sorted(t["benchmark"] for t in members), "score": fmean(t["score"] for t in members),
         "category": _most_common(t["category"] for t in members),
         "level": _most_common(t["level"] for t in members),
         "subtasks": sorted(s for t in members for s in t["subtasks"])}
        for (shots, name), members in across.items()]
    return sorted(merged, key=lambda t: (t["shots"], t["task"]))


def _means_by(tasks: Iterable[Mapping[str, Any]], *keys: str) -> dict[tuple, float]:
    groups: dict[tuple, list[float]] = defaultdict(list)
    for task in tasks:
        groups[tuple(task[key] for key in keys)].append(task["score"])
    return {key: fmean(scores) for key, scores in groups.items()}


def _nest(means: Mapping[tuple, float]) -> dict[str, dict[str, float]]:
    """{(name, shots): value} -> {name: {str(shots): value}} (JSON keys are strings)."""
    nested: dict[str, dict[str, float]] = defaultdict(dict)
    for (name, shots), value in sorted(means.items(), key=lambda item: (item[0][0], item[0][1])):
        nested[name][str(shots)] = value
    return dict(nested)


def opt_iml_rollup(tasks: Sequence[Mapping[str, Any]], group_by: Literal["category", "benchmark"] = "category",
                   task_groups: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Every level of the OPT-IML aggregation, from rows with task_id, shots, benchmark, category,
    level and score."""
    if not tasks:
        raise ValueError("no task metrics to aggregate")
    merged = merge_tasks(tasks, task_groups or {}, across_benchmarks=group_by == "category")
    columns = _means_by(merged, "shots", "level", group_by)
    by_shots: dict[int, list[float]] = defaultdict(list)
    by_level: dict[tuple[str, int], list[float]] = defaultdict(list)
    for (shots, level, _), value in columns.items():
        by_shots[shots].append(value)
        by_level[(level, shots)].append(value)
    per_shots = {str(shots): fmean(values) for shots, values in sorted(by_shots.items())}
    return {
        "group_by": group_by,
        "merged_tasks": merged,
        "columns": [{"shots": shots, "level": level, group_by: name, "score": value}
                    for (shots, level, name), value in sorted(columns.items())],
        "per_category": _nest({(c, s): v for (s, c), v in _means_by(merged, "shots", "category").items()}),
        "per_benchmark": _nest({(b, s): v for (s, b), v in _means_by(merged, "shots", "benchmark").items()}),
        "per_shots": per_shots,
        "per_level": _nest({key: fmean(values) for key, values in by_level.items()}),
        "combined": fmean(per_shots.values()),
    }


def club_categories(task_categories: Mapping[str, str], largest: int | None) -> dict[str, str]:
    """task -> reported category: the `largest` categories by task count keep their name (ties by
    name), the rest become "others"."""
    if largest is None:
        return dict(task_categories)
    counts = Counter(task_categories.values())
    kept = set(sorted(counts, key=lambda category: (-counts[category], category))[:largest])
    return {task: category if category in kept else OTHERS for task, category in task_categories.items()}


def _weighted(rows: Iterable[Mapping[str, Any]], metric: str) -> float:
    rows = list(rows)
    return sum(row[metric] * row["n_eval"] for row in rows) / sum(row["n_eval"] for row in rows)


def sample_efficiency_rollup(tasks: Sequence[Mapping[str, Any]], largest_categories: int | None = None,
                             metric: str = "rougeL") -> dict[str, Any]:
    """Per task, per (clubbed) category and overall for one shot setting; instance-weighted means."""
    if not tasks:
        raise ValueError("no task metrics to aggregate")
    reported = club_categories({task["task_id"]: task["category"] for task in tasks}, largest_categories)
    by_category: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for task in tasks:
        by_category[reported[task["task_id"]]].append(task)
    return {
        "metric": metric,
        "per_task": {task["task_id"]: task[metric] for task in sorted(tasks, key=lambda t: t["task_id"])},
        "per_category": {category: _weighted(rows, metric) for category, rows in sorted(by_category.items())},
        "tasks_per_category": {category: len(rows) for category, rows in sorted(by_category.items())},
        "overall": _weighted(tasks, metric),
    }
