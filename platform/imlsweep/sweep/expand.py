"""Expanding a spec into its trials: pure functions, no Ray.

Each trial is the spec's `base`, then the stage's `set`, the cell's `set`, one value per axis and the
task of a per-task stage, applied as dotted keys in that order. Trial names are deterministic
(`<stage>-<cell>-<axis>=<value>-<task>`), so a sweep can be resumed and its runs found again.
`labels` are the values a trial stands for in the results table (one column per swept key).
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from imlsweep.config import ConfigError
from imlsweep.sweep.spec import Stage, SweepSpec
from imlsweep.train import storage


@dataclass
class PlannedTrial:
    name: str
    stage: str
    config: dict[str, Any]  # a complete TrialConfig, as data
    labels: dict[str, Any] = field(default_factory=dict)
    depends_on: str | None = None


def set_dotted(data: dict[str, Any], key: str, value: Any, source: str) -> None:
    """`set_dotted(d, "mixture.encoding.name", "x")`: creates the dicts on the way, copies the value."""
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {key}: {'.'.join(parts[:depth + 1])} is {child!r}, not a mapping")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def label_value(value: Any) -> Any:
    """A result-table cell for a swept value: scalars as they are, sub-configs as one compact string."""
    if isinstance(value, dict):
        return ",".join(f"{key}={label_value(item)}" for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return "/".join(str(label_value(item)) for item in value)
    return value


def name_part(value: Any) -> str:
    """A filesystem- and W&B-safe piece of a trial name."""
    text = str(label_value(value)).replace("/", "_").replace(",", "_")
    return re.sub(r"[^A-Za-z0-9_.=+-]", "", text)[:48] or "x"


def task_short_names(tasks: list[str]) -> dict[str, str]:
    """`task1344_glue_entailment_classification` -> `task1344` when that stays unique."""
    short = {task: task.split("_", 1)[0] for task in tasks}
    if len(set(short.values())) != len(tasks):
        return {task: name_part(task) for task in tasks}
    return short


def axis_column(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def expand_stage(spec: SweepSpec, index: int, stage: Stage, sweep_dir: str, corpus: str,
                 earlier: dict[str, PlannedTrial], source: str) -> list[PlannedTrial]:
    where = f"{source}: stages.{index}"
    columns = [axis_column(key) for key in stage.axes]
    if len(set(columns)) != len(columns):
        raise ConfigError(f"{where}.axes: two axes end in the same key name: {list(stage.axes)}")
    cells = stage.cells or [None]
    tasks = stage.per_task.tasks if stage.per_task else [None]
    short = task_short_names(stage.per_task.tasks) if stage.per_task else {}
    trials = []
    for cell_index, cell in enumerate(cells):
        for combo in itertools.product(*stage.axes.values()):
            for task in tasks:
                config = copy.deepcopy(spec.base)
                for key, value in stage.set.items():
                    set_dotted(config, key, value, f"{where}.set")
                labels: dict[str, Any] = dict(stage.labels)
                parts = [stage.name]
                depends_on = stage.depends_on
                if cell is not None:
                    for key, value in cell.set.items():
                        set_dotted(config, key, value, f"{where}.cells.{cell_index}.set")
                    labels["cell"] = cell.name
                    labels.update(cell.labels)
                    parts.append(name_part(cell.name))
                    depends_on = cell.depends_on or depends_on
                for key, value in zip(stage.axes, combo):
                    set_dotted(config, key, value, f"{where}.axes")
                    labels[axis_column(key)] = label_value(value)
                    parts.append(f"{axis_column(key)}={name_part(value)}")
                if task is not None:
                    for key in stage.per_task.keys:
                        set_dotted(config, key, [task], f"{where}.per_task.keys")
                    labels["trained_task"] = task
                    parts.append(short[task])
                name = "-".join(parts)
                if depends_on is not None:
                    if depends_on not in earlier:
                        where_dep = f"{where}.cells.{cell_index}" if cell and cell.depends_on else where
                        raise ConfigError(f"{where_dep}.depends_on: no trial {depends_on!r} in an earlier stage "
                                          f"(trials there: {', '.join(list(earlier)[:5])}{', ...' if len(earlier) > 5 else ''})")
                    config["init_from"] = storage.join(sweep_dir, depends_on, "hf_model")
                config["name"] = name
                config["corpus"] = corpus
                set_dotted(config, "train.workers", spec.resources.workers, source)
                set_dotted(config, "train.use_gpu", spec.resources.gpus_per_worker > 0, source)
                trials.append(PlannedTrial(name=name, stage=stage.name, config=config, labels=labels,
                                           depends_on=depends_on))
    if stage.search is not None:
        # A search stage has one template trial; Ray Tune samples `num_samples` variants of it.
        trials[0].labels.update({axis_column(key): None for key in stage.search.space})
    return trials


def expand_spec(spec: SweepSpec, sweep_dir: str, corpus: str, source: str) -> list[PlannedTrial]:
    """Every trial of every stage, in stage order; errors name the spec file and the key."""
    trials: dict[str, PlannedTrial] = {}
    for index, stage in enumerate(spec.stages):
        stage_trials = expand_stage(spec, index, stage, sweep_dir, corpus, trials, source)
        for trial in stage_trials:
            if trial.name in trials or sum(t.name == trial.name for t in stage_trials) > 1:
                raise ConfigError(f"{source}: stages.{index}: trial name {trial.name!r} repeats; "
                                  "give cells distinct names or axes distinct values")
        trials.update({trial.name: trial for trial in stage_trials})
    apply_retention(spec, list(trials.values()), source)
    return list(trials.values())


def apply_retention(spec: SweepSpec, trials: list[PlannedTrial], source: str) -> None:
    """Export HF weights where the retention policy (or a dependent stage) needs them."""
    needed = {trial.depends_on for trial in trials if trial.depends_on}
    if needed and spec.retention.hf_model == "none":
        raise ConfigError(f"{source}: retention.hf_model: `none`, but later trials start from {sorted(needed)}")
    for trial in trials:
        export = spec.retention.hf_model == "all" or trial.name in needed
        set_dotted(trial.config, "train.export_hf", export, source)


def validate_trials(trials: list[PlannedTrial], source: str) -> list[Any]:
    """Build every TrialConfig before anything runs; the first error names the file and the trial."""
    from imlsweep.train.config import TrialConfig
    from imlsweep.config import validate_config

    return [validate_config(trial.config, TrialConfig, f"{source}: trial {trial.name}") for trial in trials]
