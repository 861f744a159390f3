"""`sweep plan`: trial counts by stage and axis, resources and concurrency, GPU-hour and disk estimates.

Each trial's examples, tokens, evaluation items and seconds come from `imlsweep.sweep.estimate` (measured
on the sweep's built corpus when there is one); GPU-hours = trial seconds x GPUs per trial; checkpoint
disk = exported models x parameters x bytes per parameter, plus optimizer state while trials run (a LoRA
trial's: its adapter's parameters, or the whole model's exported when merged). Once the corpus
is built, the token cache's part: how many of the examples the trials draw it holds already, and its
size then and when they have run.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from imlsweep.errors import UserError
from imlsweep.sweep.estimate import Estimator
from imlsweep.sweep.expand import PlannedTrial
from imlsweep.sweep.spec import SweepSpec
from imlsweep.sweep.sweep import Sweep

# Optimizer state of a running trial: fp32 master weights + two Adam moments.
OPTIMIZER_BYTES_PER_PARAM = 12
NAMED_SIZES = {"small": 60e6, "base": 250e6, "large": 780e6, "xl": 3e9, "xxl": 11e9}


def max_concurrent_trials(spec: SweepSpec, cluster: dict[str, float]) -> int:
    """Trials that fit at once: GPUs bound it on a GPU cluster. Each trial keeps one CPU beyond its
    workers' for its data pipeline (Ray Data tasks), so training workers never starve the data."""
    if spec.concurrency != "auto":
        return spec.concurrency
    resources = spec.resources
    limits = [int(cluster.get("CPU", 0) // (1 + resources.workers * resources.cpus_per_worker))]
    gpus_per_trial = resources.workers * resources.gpus_per_worker
    if gpus_per_trial > 0:
        limits.append(int(cluster.get("GPU", 0) // gpus_per_trial))
    return max(1, min(limits))


def model_params(name: str) -> float | None:
    """Parameters from a model name: `tk-instruct-3b` -> 3e9, `t5-xl-lm-adapt` -> 3e9, tiny -> counted."""
    from imlsweep.train.model import ModelConfig

    if ModelConfig(name=name).is_tiny:
        from imlsweep.train.model import load_model

        return float(sum(p.numel() for p in load_model(ModelConfig(name=name)).parameters()))
    stem = Path(name).name.lower()
    match = re.search(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)([mb])(?![a-z])", stem)
    if match:
        return float(match.group(1)) * (1e6 if match.group(2) == "m" else 1e9)
    for size in sorted(NAMED_SIZES, key=len, reverse=True):
        if re.search(rf"(?<![a-z]){size}(?![a-z])", stem):
            return NAMED_SIZES[size]
    return None


def saved_params(config: Any, params: float) -> tuple[float, float]:
    """(exported, trained) parameters of a trial of a `params` model: what its `hf_model/` holds, and what
    its checkpoints hold optimizer state of. A LoRA trial trains and exports its adapter alone (the whole
    model when `export_merged`); where the model's config is not at hand to count the adapter, the whole
    model stands in."""
    lora = config.model.lora
    shape = planned_model(model_key(config.model)) if lora else None
    if shape is None:
        return params, params
    return (params if lora.export_merged else shape.adapter_params), shape.adapter_params


def trials_by_label(trials: list[PlannedTrial], label: str, weights: dict[str, float]) -> dict[str, int]:
    """Trial counts by a label's value, e.g. `setting`: {single_task: 952, multi_task: 9}."""
    counts: Counter = Counter()
    for trial in trials:
        if label in trial.labels:
            counts[str(trial.labels[label])] += weights[trial.stage]
    return {key: int(round(value)) for key, value in counts.most_common()}


def plan_summary(sweep: Sweep, cluster: dict[str, float] | None = None,
                 estimator: Estimator | None = None) -> dict[str, Any]:
    """What `sweep plan --json` prints. `cluster` (CPU/GPU totals) sets the concurrency figure;
    `estimator` measures on the sweep's built corpus (default: the spec's figures alone)."""
    spec, trials = sweep.spec, sweep.trials
    by_stage = {stage.name: sweep.planned_count(stage.name) for stage in spec.stages}
    axes = {stage.name: {key: len(values) for key, values in stage.axes.items()} for stage in spec.stages}
    cells = {stage.name: [cell.name for cell in stage.cells] for stage in spec.stages if stage.cells}
    per_task = {stage.name: len(stage.per_task.tasks) for stage in spec.stages if stage.per_task}
    mixture_search = {stage.name: {"over": stage.mixture_search.over, "groups": len(stage.mixture_search.groups),
                                   "drawn": stage.mixture_search.mixtures, "eps": 1}
                      for stage in spec.stages if stage.mixture_search}
    proposed = {stage.name: {"from": stage.proposed_from, "mixtures": 1,
                             "scales": [cell.name for cell in stage.cells] or [stage.name]}
                for stage in spec.stages if stage.proposed_from}
    built_on = {stage.name: built_on_trials(sweep, stage) for stage in spec.stages if stage.from_each or stage.merge}
    # a search stage's one template trial stands for all its samples
    weights = {stage.name: by_stage[stage.name] / max(1, len(sweep.stage_trials(stage.name))) for stage in spec.stages}
    estimator = estimator or Estimator(spec)
    estimates = [(estimator.trial(trial.config), weights[trial.stage]) for trial in trials]
    seconds = sum(estimate.seconds * weight for estimate, weight in estimates)
    gpus = spec.resources.workers * spec.resources.gpus_per_worker
    names = Counter(trial.config.model.name for trial in trials)
    params = spec.estimate.model_params or max((model_params(name) or 0 for name in names), default=0) or None
    exported = sum(trial.config.train.export_hf for trial in trials)
    concurrency = max_concurrent_trials(spec, cluster) if cluster else None
    summary: dict[str, Any] = {
        "sweep": spec.name,
        "total_trials": sum(by_stage.values()),
        "trials_by_stage": by_stage,
        "trials_by_setting": trials_by_label(trials, "setting", weights),
        "axes": axes,
        "cells": cells,
        "per_task": per_task,
        "mixture_search": mixture_search,  # proxy trials: Dirichlet draws + the EPS mixture
        "proposed": proposed,  # 1 proposed mixture x scales, made when the proxies have finished
        "built_on": built_on,
        "models": dict(names),
        "resources": spec.resources.model_dump() | {"gpus_per_trial": gpus},
        "max_concurrent_trials": concurrency,
        "estimated_from": "corpus" if estimator.from_corpus else "spec",
        "not_measured": sorted(estimator.unmeasured),  # mixtures estimated from the spec's figures, and why
        "train_examples": sum(estimate.examples * weight for estimate, weight in estimates),
        "train_tokens": sum(estimate.tokens * weight for estimate, weight in estimates),
        "eval_items": sum(estimate.eval_items * weight for estimate, weight in estimates),
        "trial_hours": seconds / 3600,
        "gpu_hours": seconds * gpus / 3600,
        "model_params": params,
        "exported_models": exported,
        "kept_models": kept_models(sweep, by_stage),
        "hf_model_retention": spec.retention.hf_model,
    }
    if params:
        saved = [saved_params(trial.config, params) for trial in trials]
        exported_params = sum(export for (export, _), trial in zip(saved, trials) if trial.config.train.export_hf)
        running = (concurrency or 1) * max(trained for _, trained in saved) * OPTIMIZER_BYTES_PER_PARAM
        kept = (sum(trained for _, trained in saved) * OPTIMIZER_BYTES_PER_PARAM
                if spec.retention.checkpoints == "keep" else 0)
        summary["checkpoint_disk_gb"] = (exported_params * spec.estimate.checkpoint_bytes_per_param + kept) / 1e9
        summary["peak_running_checkpoint_gb"] = running / 1e9
    summary["memory"] = memory_by_shape(sweep)
    tokens_per_example = summary["train_tokens"] / max(1.0, summary["train_examples"])
    summary["token_cache"] = token_cache_coverage(sweep, bytes_per_example=4 * tokens_per_example)  # int32 ids
    return summary


def kept_models(sweep: Sweep, by_stage: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per stage, the trials that keep a loadable model (their exported `hf_model/`, per
    `retention.hf_model`): what `imlsweep sweep eval` can score again. `trials` lists them where only
    some of the stage's do; a search stage's samples all follow its template (those its scheduler
    stops early keep none)."""
    kept: dict[str, dict[str, Any]] = {}
    for stage in sweep.spec.stages:
        trials = sweep.stage_trials(stage.name)
        exported = [trial.name for trial in trials if trial.config.train.export_hf]
        count = by_stage[stage.name] if exported and len(exported) == len(trials) else len(exported)
        kept[stage.name] = {"kept": count, "of": by_stage[stage.name],
                            "trials": exported if 0 < len(exported) < len(trials) else None}
    return kept


def kept_model_lines(summary: dict[str, Any], retention: str) -> list[str]:
    """The plan's lines on what `sweep eval` can score again, with a warning per stage that loses models."""
    kept = summary["kept_models"]
    lines = ["models kept for `imlsweep sweep eval`: "
             + ", ".join(f"{stage} {counts['kept']} of {counts['of']}" for stage, counts in kept.items())]
    for stage, counts in kept.items():
        if counts["kept"] < counts["of"]:
            which = (f"keeps only the models of {', '.join(counts['trials'])}" if counts["trials"]
                     else "keeps no model")
            lines.append(f"warning: stage {stage} {which} (retention.hf_model: {retention}): `imlsweep sweep eval` "
                         f"cannot score {'the others' if counts['trials'] else 'its trials'} again; set "
                         "`retention: {hf_model: all}` to keep them")
    return lines


def built_on_trials(sweep: Sweep, stage: Any) -> str:
    """A `from_each` or `merge` stage's trials in words: what they start from or merge."""
    trials = sweep.stage_trials(stage.name)
    if stage.from_each is not None:
        sources = {trial.depends_on for trial in trials}
        return f"from each of {len(sources)} {stage.from_each.stage} trials"
    merged = {name for trial in trials for name in trial.merges}
    groups = len(stage.merge.groups) if stage.merge.groups is not None else 1
    return f"{groups} merged models of {len(merged)} {stage.merge.stage} trials"


def memory_by_shape(sweep: Sweep) -> list[dict[str, Any]]:
    """Per distinct trial shape (model and the settings memory depends on): its trials, the memory one
    GPU and one node's host need (`imlsweep.train.memory`), and whether that fits `resources`
    (`fits` null when the spec declares neither limit, or the model's config is not at hand)."""
    from imlsweep.train.memory import plan_memory, trial_shape

    resources = sweep.spec.resources
    shapes: dict[Any, dict[str, Any]] = {}
    for trial in sweep.trials:
        key = model_key(trial.config.model)
        model = planned_model(key)
        shape = trial_shape(trial.config, model, resources.gpus_per_node) if model else None
        entry = shapes.setdefault((key, shape), {"trials": [], "model": trial.config.model.name, "shape": shape})
        entry["trials"].append(trial.name)
    memory = []
    for (key, shape), entry in shapes.items():
        if shape is None:
            memory.append({"trials": entry["trials"], "model": entry["model"], "gpu_gb": None,
                           "host_gb_per_node": None, "fits": None,
                           "not_planned": "the model's config.json is not on this machine"})
            continue
        planned = plan_memory(planned_model(key), shape)
        gpu_gb = planned.device_gb if shape.gpu else None
        limits = [(gpu_gb, resources.gpu_memory_gb), (planned.host_gb_per_node, resources.host_memory_gb)]
        checked = [need <= limit for need, limit in limits if need is not None and limit is not None]
        memory.append({"trials": entry["trials"], "model": entry["model"],
                       "settings": {"workers": shape.workers, "workers_per_node": shape.workers_per_node,
                                    "zero_stage": shape.zero_stage, "offload_optimizer": shape.offload_optimizer,
                                    "offload_params": shape.offload_params, "precision": shape.precision,
                                    "micro_batch_size": shape.micro_batch_size, "seq_len": shape.seq_len,
                                    "activation_checkpointing": shape.activation_checkpointing},
                       "gpu_gb": gpu_gb, "host_gb_per_node": planned.host_gb_per_node,
                       "fits": all(checked) if checked else None, "detail": planned.as_dict()})
    return memory


def model_key(model: Any) -> str:
    """What of a `ModelConfig` its memory and saved size depend on, as JSON."""
    return model.model_dump_json(include={"name", "dropout", "lora"})


@lru_cache(maxsize=None)
def planned_model(key: str) -> Any:
    """`imlsweep.train.memory.planned_model` of a `model_key`, read once per model of a sweep."""
    from imlsweep.train.memory import planned_model as shape_of
    from imlsweep.train.model import ModelConfig

    return shape_of(ModelConfig.model_validate_json(key))


def token_cache_coverage(sweep: Sweep, bytes_per_example: float) -> dict[str, Any] | None:
    """None until the corpus is built (entries are keyed by the task files' content), and where a trial
    cannot be read here (the plan's checks list why)."""
    from imlsweep.corpus.store import MANIFEST_FILE
    from imlsweep.data.token_cache import cache_location, coverage

    if not (Path(sweep.corpus_dir) / MANIFEST_FILE).is_file():
        return None
    trials = [(trial.config.mixture, trial.config.corpus, trial.config.model.tokenizer_name,
               cache_location(trial.config.token_cache, trial.config.corpus)) for trial in sweep.trials
              if trial.config.merge is None]
    try:
        return coverage(trials, bytes_per_example)
    except (UserError, OSError):
        return None


def format_plan(summary: dict[str, Any]) -> str:
    by_stage = summary["trials_by_stage"]
    lines = [f"sweep {summary['sweep']}: {summary['total_trials']} trials = "
             + " + ".join(str(count) for count in by_stage.values())
             + "  (" + ", ".join(f"{stage} {count}" for stage, count in by_stage.items()) + ")"]
    if summary["trials_by_setting"]:
        by_setting = summary["trials_by_setting"]
        lines.append(f"  by setting: {sum(by_setting.values())} = " + " + ".join(
            f"{count} {setting}" for setting, count in by_setting.items()))
    for stage, count in by_stage.items():
        parts = [summary["built_on"][stage]] if stage in summary.get("built_on", {}) else []
        if summary["cells"].get(stage):
            parts.append(f"{len(summary['cells'][stage])} cells ({', '.join(summary['cells'][stage])})")
        parts += [f"{key} x{n}" for key, n in summary["axes"][stage].items()]
        if stage in summary["per_task"]:
            parts.append(f"{summary['per_task'][stage]} tasks")
        if stage in summary.get("mixture_search", {}):
            search = summary["mixture_search"][stage]
            parts = [f"{search['drawn']} Dirichlet mixtures over {search['groups']} {search['over']} groups "
                     f"+ the EPS mixture"]
        if stage in summary.get("proposed", {}):
            proposal = summary["proposed"][stage]
            parts = [f"1 proposed mixture (of {proposal['from']}, made when it has finished)",
                     f"{len(proposal['scales'])} scales ({', '.join(proposal['scales'])})"]
        lines.append(f"  {stage}: {count} trials" + (": " + " x ".join(parts) if parts else ""))
    resources = summary["resources"]
    lines.append(f"resources per trial: {resources['workers']} workers x {resources['gpus_per_worker']} GPU, "
                 f"{resources['cpus_per_worker']} CPU" + (f"; {summary['max_concurrent_trials']} trials at a time here"
                                                          if summary["max_concurrent_trials"] else ""))
    lines.append("models: " + ", ".join(f"{name} ({n})" for name, n in summary["models"].items()))
    source = ("measured on the corpus" if summary["estimated_from"] == "corpus"
              else "from the spec's estimate.without_corpus (no built corpus here)")
    lines.append(f"estimate ({source}): {summary['train_examples']:.3g} train examples, {summary['train_tokens']:.3g} "
                 f"train tokens, {summary['eval_items']:.3g} eval items; {summary['trial_hours']:.3g} trial-hours, "
                 f"{summary['gpu_hours']:.3g} GPU-hours")
    lines += [f"  not measured (the spec's figures stand in): {why}" for why in summary["not_measured"]]
    if "checkpoint_disk_gb" in summary:
        lines.append(f"disk: {summary['exported_models']} exported models, {summary['checkpoint_disk_gb']:.3g} GB kept; "
                     f"{summary['peak_running_checkpoint_gb']:.3g} GB of optimizer state while trials run")
    lines += kept_model_lines(summary, summary["hf_model_retention"])


    lines += format_memory(summary["memory"], summary["resources"])
    cache = summary["token_cache"]
    if cache is not None:
        lines.append(f"token cache: {cache['cached_fraction']:.0%} of {cache['examples']} examples cached, "
                     f"{cache['bytes'] / 1e6:.3g} MB now, about {cache['expected_bytes'] / 1e6:.3g} MB after the sweep "
                     f"({', '.join(cache['locations'])})")
    return "\n".join(lines)


def format_memory(memory: list[dict[str, Any]], resources: dict[str, Any]) -> list[str]:
    gpu_limit, host_limit = resources.get("gpu_memory_gb"), resources.get("host_memory_gb")
    lines = [f"memory per trial shape (GiB; GPU limit {gpu_limit or 'not declared'}, node host limit "
             f"{host_limit or 'not declared'}):"]
    for entry in memory:
        trials = entry["trials"]
        names = trials[0] + (f" and {len(trials) - 1} more" if len(trials) > 1 else "")
        if entry["gpu_gb"] is None and entry["host_gb_per_node"] is None:
            lines.append(f"  {names}: not planned ({entry['not_planned']})")
            continue
        settings, detail = entry["settings"], entry["detail"]
        verdict = {True: "fits", False: "DOES NOT FIT", None: "not checked"}[entry["fits"]]
        gpu = f"{entry['gpu_gb']:.1f} per GPU, " if entry["gpu_gb"] is not None else ""
        lines.append(f"  {names} ({entry['model']}, ZeRO {settings['zero_stage']}, micro batch "
                     f"{settings['micro_batch_size']} x {settings['seq_len']}"
                     f"{', activation checkpointing' if settings['activation_checkpointing'] else ''}): {gpu}"
                     f"{entry['host_gb_per_node']:.1f} host per node ({settings['workers_per_node']} workers); "
                     f"model states {detail['model_states_gb']:.1f}, activations {detail['activations_gb']:.1f}: "
                     f"{verdict}")
    return lines
