"""Expanding a spec into its trials: pure functions, no Ray.

Each trial is the spec's `base`, then the stage's `set`, the cell's `set`, one value per axis and the
task of a per-task stage, applied as dotted keys in that order. Trial names are deterministic
(`<stage>-<cell>-<axis>=<value>-<task>`), so a sweep can be resumed and its runs found again. A
`from_each` stage makes its trials once per source trial (`<stage>-...-<source>-to-<target>`, labelled
`source_task`, `source_trial` and, with per_task, `trained_task`), starting each from its source; a
`merge` stage once per group (`<stage>-...-<group>`, labelled `merged_group` and `source_models`),
merging the group's trials (`merges`) from the base they were fine-tuned from.
`labels` are the values a trial stands for in the results table (one column per swept key).
A `mixture_search` stage is its proxy trials: `<stage>-eps` (the stage's own mixture) and `<stage>-m000`, ...
(the Dirichlet draws as the mixture's proportions), labelled `mixture_point`; a `proposed_from` stage is one
trial per cell (`<stage>-<cell>`, labelled `mixture_point: proposed`) whose mixture the driver sets when the
proxies have finished (`proposal_of`).
Each trial's config is validated once, here, into a `TrialConfig` that travels to the worker as is.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from imlsweep import storage
from imlsweep.config import ConfigError, validate_config
from imlsweep.data.mixture import PROPORTION_KEYS
from imlsweep.sweep.mixture_search import draw_mixtures
from imlsweep.sweep.spec import Stage, SweepSpec, TrialSelection
from imlsweep.train.config import TrainConfig, TrialConfig
from imlsweep.trial_dir import TrialDir

# The results column of a stage's `replicates: N`: which replicate (0..N-1) a trial is.
REPLICATE_LABEL = "replicate"
# The results column of a mixture search's trials: `eps`, the draw (`m000`, ...) or `proposed`.
MIXTURE_POINT_LABEL = "mixture_point"
EPS_POINT, PROPOSED_POINT = "eps", "proposed"
# Train keys that a sweep's `resources` (same names) sets on every trial.
RESOURCE_KEYS = ("workers", "cpus_per_worker", "gpus_per_worker")


@dataclass
class PlannedTrial:
    name: str
    stage: str
    config: TrialConfig  # validated once, here, and carried as is to the worker
    labels: dict[str, Any] = field(default_factory=dict)
    depends_on: str | None = None
    proposal_of: str | None = None  # the mixture_search stage whose proposed mixture it trains
    merges: list[str] = field(default_factory=list)  # trials whose models a merge trial merges


@dataclass
class DraftTrial:
    """A trial before validation: its config as data, with the dotted keys applied."""

    name: str
    stage: str
    config: dict[str, Any]
    labels: dict[str, Any]
    depends_on: str | None
    proposal_of: str | None = None
    merges: list[str] = field(default_factory=list)


@dataclass
class Placement:
    """What a trial takes from the thing it is made for (a per-task task, a source trial, a merge group):
    name parts, labels, dotted keys, and the trials it starts from or merges."""

    parts: list[str] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)
    sets: dict[str, Any] = field(default_factory=dict)
    depends_on: str | None = None
    merges: list[str] = field(default_factory=list)


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
    """A swept value as a results-table cell and a label: scalars as they are, a list as `a/b/c`, a
    sub-config as `key=value,key=value`."""
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


def point_name(index: int) -> str:
    """A mixture search's draw `index` as its `mixture_point` and trial name part: m000, m001, ..."""
    return f"m{index:03d}"


def proportion_params(over: str, weights: dict[str, float]) -> dict[str, Any]:
    """The dotted keys that make a mixture's shares `weights` over its `over` groups (other vectors unset)."""
    return {f"mixture.{key}": weights if kind == over else None for kind, key in PROPORTION_KEYS.items()}


def mixture_search_drafts(spec: SweepSpec, index: int, stage: Stage, earlier: dict[str, DraftTrial],
                          source: str) -> list[DraftTrial]:
    """The EPS trial (the stage's own mixture), then one trial per Dirichlet draw of the groups' weights."""
    where, search = f"{source}: stages.{index}", stage.mixture_search
    config = copy.deepcopy(spec.base)
    for key, value in stage.set.items():
        set_dotted(config, key, value, f"{where}.set")
    depends_on = (resolve_dependency(stage.depends_on, 0, 1, set(earlier), f"{where}.depends_on")
                  if stage.depends_on else None)
    draws = draw_mixtures(search.groups, search.mixtures, search.concentration, search.seed)
    drafts = [DraftTrial(name=f"{stage.name}-{EPS_POINT}", stage=stage.name, config=config,
                         labels=stage.labels | {MIXTURE_POINT_LABEL: EPS_POINT}, depends_on=depends_on)]
    for draw_index, weights in enumerate(draws):
        drawn = copy.deepcopy(config)
        for key, value in proportion_params(search.over, weights).items():
            set_dotted(drawn, key, value, f"{where}.mixture_search")
        drafts.append(DraftTrial(name=f"{stage.name}-{point_name(draw_index)}", stage=stage.name, config=drawn,
                                 labels=stage.labels | {MIXTURE_POINT_LABEL: point_name(draw_index)},
                                 depends_on=depends_on))
    return drafts


def expand_stage(spec: SweepSpec, index: int, stage: Stage, earlier: dict[str, DraftTrial],
                 source: str) -> list[DraftTrial]:
    where = f"{source}: stages.{index}"
    if stage.mixture_search is not None:
        return mixture_search_drafts(spec, index, stage, earlier, source)
    columns = [axis_column(key) for key in stage.axes]
    if len(set(columns)) != len(columns):
        raise ConfigError(f"{where}.axes: two axes end in the same key name: {list(stage.axes)}")
    cells = stage.cells or [None]
    placements = stage_placements(stage, earlier, where)
    drafts = []
    for cell_index, cell in enumerate(cells):
        for combo in itertools.product(*stage.axes.values()):
            for placement in placements:
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
                for key, value in placement.sets.items():
                    set_dotted(config, key, value, where)
                labels.update(placement.labels)
                parts += placement.parts
                where_dep = f"{where}.cells.{cell_index}" if cell and cell.depends_on else where
                for replicate in range(stage.replicates):
                    draft = DraftTrial(name="-".join(parts), stage=stage.name, config=config, labels=labels,
                                       depends_on=placement.depends_on or depends_on, merges=placement.merges,
                                       proposal_of=stage.proposed_from)
                    if stage.proposed_from is not None:
                        draft.labels = labels | {MIXTURE_POINT_LABEL: PROPOSED_POINT}
                    if stage.replicates > 1:
                        draft = replicate_of(draft, replicate, where)
                    if draft.depends_on is not None and placement.depends_on is None:
                        draft.depends_on = resolve_dependency(draft.depends_on, replicate, stage.replicates,
                                                              set(earlier), f"{where_dep}.depends_on")
                    drafts.append(draft)
    if stage.search is not None:
        # A search stage has one template trial; Ray Tune samples `num_samples` variants of it.
        drafts[0].labels.update({axis_column(key): None for key in stage.search.space})
    return drafts


def stage_placements(stage: Stage, earlier: dict[str, DraftTrial], where: str) -> list[Placement]:
    """One placement per trial a cell and axis combination makes: per task, per (source, task), per group."""
    if stage.merge is not None:
        return merge_placements(stage, earlier, where)
    targets: list[str | None] = stage.per_task.tasks if stage.per_task else [None]
    short = task_short_names(stage.per_task.tasks) if stage.per_task else {}

    def target_placement(task: str | None) -> Placement:
        if task is None:
            return Placement()
        return Placement(parts=[short[task]], labels={"trained_task": task},
                         sets={key: [task] for key in stage.per_task.keys})

    if stage.from_each is None:
        return [target_placement(task) for task in targets]
    sources = selected_trials(stage.from_each, earlier, f"{where}.from_each")
    names = source_short_names(sources, stage.from_each.stage)
    placements = []
    for trial in sources:
        source_task = trial.labels.get("trained_task", trial.name)
        for task in targets:
            if task == source_task and not stage.from_each.same_task:
                continue
            placement = target_placement(task)
            placement.parts = [f"{names[trial.name]}-to-{placement.parts[0]}" if task else f"from-{names[trial.name]}"]
            placement.labels |= {"source_task": source_task, "source_trial": trial.name}
            placement.depends_on = trial.name
            placements.append(placement)
    return placements


def merge_placements(stage: Stage, earlier: dict[str, DraftTrial], where: str) -> list[Placement]:
    """One merged model per group of the selected trials; the group's trials must share a model and a
    starting point (the base the merge subtracts), and export the same kind of model (full weights, or
    LoRA adapters of that base)."""
    merge = stage.merge
    chosen = selected_trials(merge, earlier, f"{where}.merge")
    groups = merge.groups if merge.groups is not None else {"all": None}
    placements = []
    for group, values in groups.items():
        members = chosen if values is None else [trial for trial in chosen if trial.labels.get(merge.group_label) in values]
        if not members:
            raise ConfigError(f"{where}.merge.groups.{group}: no selected trial has {merge.group_label} in {values}")
        check_merged_together(members, f"{where}.merge (stage {stage.name}, group {group})")
        sets = {key: list(values if values is not None else [m.labels.get(merge.group_label) for m in members])
                for key in merge.keys}
        # the merged model has the architecture of those it merges, and is a full model even when they are adapters
        sets["model"] = base_model(members[0])
        placements.append(Placement(parts=[name_part(group)], sets=sets,
                                    labels={"merged_group": group, "source_models": len(members)},
                                    merges=[member.name for member in members]))
    return placements


def check_merged_together(members: list[DraftTrial], where: str) -> None:
    """Trials merged into one model start from one base and all export full models or all LoRA adapters."""
    first = members[0]
    for member in members[1:]:
        if exports_adapter(member) != exports_adapter(first):
            adapter, full = (member, first) if exports_adapter(member) else (first, member)
            raise ConfigError(f"{where}: {adapter.name} exports a LoRA adapter and {full.name} a full model: a merge "
                              "takes full models or LoRA adapters of one base, not both (model.lora.export_merged: "
                              "true makes a LoRA trial export a full model)")
        if merge_origin(member) != merge_origin(first):
            raise ConfigError(f"{where}: {member.name} and {first.name} start from different models (model, init_from "
                              "or depends_on): merged models and LoRA adapters must share one base")


def base_model(trial: DraftTrial) -> Any:
    """A trial's `model` setting without its LoRA settings: the model its adapter (if any) was trained on."""
    model = trial.config.get("model")
    return {key: value for key, value in model.items() if key != "lora"} if isinstance(model, dict) else model


def exports_adapter(trial: DraftTrial) -> bool:
    """Whether a trial's hf_model/ is a LoRA adapter rather than a full model."""
    model = trial.config.get("model")
    lora = model.get("lora") if isinstance(model, dict) else None
    return isinstance(lora, dict) and not lora.get("export_merged", False)


def merge_origin(trial: DraftTrial) -> tuple[Any, ...]:
    """What a trial's weights start from; adapters of one base may differ in rank and targets."""
    return base_model(trial), trial.config.get("init_from"), trial.depends_on


def selected_trials(selection: TrialSelection, earlier: dict[str, DraftTrial], where: str) -> list[DraftTrial]:
    """The earlier trials of `selection.stage` whose labels match `selection.where`, in spec order."""
    in_stage = [trial for trial in earlier.values() if trial.stage == selection.stage]
    if not in_stage:
        stages = sorted({trial.stage for trial in earlier.values()})
        raise ConfigError(f"{where}.stage: {selection.stage!r} is not an earlier stage (earlier: {', '.join(stages)})")
    chosen = [trial for trial in in_stage
              if all(trial.labels.get(key) == value for key, value in selection.where.items())]
    if not chosen:
        raise ConfigError(f"{where}.where: no trial of stage {selection.stage} has labels {selection.where} "
                          f"(e.g. {in_stage[0].name}: {in_stage[0].labels})")
    return chosen


def source_short_names(sources: list[DraftTrial], stage: str) -> dict[str, str]:
    """A source trial in a trial name: its trained task's short name, else its name after the stage's."""
    tasks = [trial.labels.get("trained_task") for trial in sources]
    if all(tasks) and len(set(tasks)) == len(tasks):
        short = task_short_names(tasks)
        return {trial.name: short[task] for trial, task in zip(sources, tasks)}
    return {trial.name: name_part(trial.name.removeprefix(f"{stage}-")) for trial in sources}


def replicate_of(draft: DraftTrial, replicate: int, source: str) -> DraftTrial:
    """Replicate `replicate` of a trial: named `<trial>-r<i>`, labelled `replicate: i`, trained with
    `train.seed` + i (the seed the trial would have, else TrainConfig's default)."""
    config = copy.deepcopy(draft.config)
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    seed = train.get("seed", TrainConfig.model_fields["seed"].default)
    set_dotted(config, "train.seed", int(seed) + replicate, f"{source}.replicates")
    return DraftTrial(name=f"{draft.name}-r{replicate}", stage=draft.stage, config=config,
                      labels=draft.labels | {REPLICATE_LABEL: replicate}, depends_on=draft.depends_on,
                      merges=draft.merges)


def resolve_dependency(depends_on: str, replicate: int, replicates: int, earlier: set[str], source: str) -> str:
    """The earlier trial a trial starts from. A replicated trial named by its base name means the same
    replicate of it: a stage with as many replicates starts each replicate from its own."""
    if depends_on in earlier:
        return depends_on
    upstream = sum(f"{depends_on}-r{index}" in earlier for index in range(len(earlier)))
    if upstream:
        if upstream == replicates:
            return f"{depends_on}-r{replicate}"
        raise ConfigError(f"{source}: {depends_on!r} has {upstream} replicates ({depends_on}-r0, ...) and this stage "
                          f"{replicates}: give it as many `replicates` (each starts from its own) or name one replicate")
    listed = sorted(earlier)
    raise ConfigError(f"{source}: no trial {depends_on!r} in an earlier stage "
                      f"(trials there: {', '.join(listed[:5])}{', ...' if len(listed) > 5 else ''})")


def set_resources(spec: SweepSpec, draft: DraftTrial, source: str) -> None:
    """The sweep's `resources` on the trial's train settings; the trial must not set them itself."""
    train = draft.config.get("train") or {}
    for key in RESOURCE_KEYS:
        if isinstance(train, dict) and key in train:
            raise ConfigError(f"{source}: trial {draft.name}: train.{key}: set by the sweep's resources.{key}, "
                              "not by a trial")
        set_dotted(draft.config, f"train.{key}", getattr(spec.resources, key), source)


def expand_spec(spec: SweepSpec, sweep_uri: str, corpus: str, source: str) -> list[PlannedTrial]:
    """Every trial of every stage, in stage order, each config validated into a `TrialConfig`; errors
    name the spec file, the trial and the key."""
    drafts: dict[str, DraftTrial] = {}
    for index, stage in enumerate(spec.stages):
        stage_drafts = expand_stage(spec, index, stage, drafts, source)
        for draft in stage_drafts:
            if draft.name in drafts or sum(d.name == draft.name for d in stage_drafts) > 1:
                raise ConfigError(f"{source}: stages.{index}: trial name {draft.name!r} repeats; "
                                  "give cells distinct names or axes distinct values")
        drafts.update({draft.name: draft for draft in stage_drafts})
    exported = exported_trials(spec, list(drafts.values()), source)
    for draft in drafts.values():
        draft.config["name"] = draft.name
        draft.config["corpus"] = corpus
        set_resources(spec, draft, source)
        set_dotted(draft.config, "train.export_hf", draft.name in exported, source)
        if draft.depends_on is not None:
            draft.config["init_from"] = TrialDir(storage.join(sweep_uri, draft.depends_on)).hf_model
        if draft.merges:
            set_dotted(draft.config, "merge.models",
                       [TrialDir(storage.join(sweep_uri, name)).hf_model for name in draft.merges], source)
            set_dotted(draft.config, "merge.base", drafts[draft.merges[0]].config.get("init_from"), source)
    return [PlannedTrial(name=draft.name, stage=draft.stage, labels=draft.labels, depends_on=draft.depends_on,
                         proposal_of=draft.proposal_of,
                         merges=draft.merges,
                         config=validate_config(draft.config, TrialConfig, f"{source}: trial {draft.name}"))
            for draft in drafts.values()]


def exported_trials(spec: SweepSpec, drafts: list[DraftTrial], source: str) -> set[str]:
    """Trials whose final weights are exported: all, or those a later trial starts from (retention)."""
    needed = {draft.depends_on for draft in drafts if draft.depends_on}
    needed |= {name for draft in drafts for name in draft.merges}
    if needed and spec.retention.hf_model == "none":
        raise ConfigError(f"{source}: retention.hf_model: `none`, but later trials start from {sorted(needed)}")
    if spec.retention.hf_model == "all":
        return {draft.name for draft in drafts}
    return needed


def sampled_trial(template: PlannedTrial, name: str, params: dict[str, Any], source: str,
                  label: bool = True) -> PlannedTrial:
    """A search stage's trial: the template with sampled values at their dotted keys, validated; each value
    also a label, unless `label` is False (a proposed mixture: its trial's `mixture_point` says what it is)."""
    config = template.config.model_dump(mode="json")
    labels = dict(template.labels)
    for key, value in params.items():
        set_dotted(config, key, value, source)
        if label:
            labels[axis_column(key)] = label_value(value)
    config["name"] = name
    return PlannedTrial(name=name, stage=template.stage, labels=labels, depends_on=template.depends_on,
                        proposal_of=template.proposal_of,
                        config=validate_config(config, TrialConfig, f"{source}: trial {name}"))
