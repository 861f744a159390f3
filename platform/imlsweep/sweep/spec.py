"""The sweep spec: what a `sweeps/*.yaml` file may say.

A spec names a corpus, a `base` trial (a partial TrialConfig written as nested dicts) and ordered
`stages`. Each stage sets dotted keys on the base (`train.lr: 3e-5`), may sweep `axes` (dotted key ->
list of values, or lists of whole sub-configs), may list named `cells` (explicit overrides, e.g. the
eight cells of the sample-efficiency study), and may train one model per task (`per_task`). A stage
or a cell that `depends_on` a trial of an earlier stage starts from that trial's exported weights.
A stage may instead `search` a space with Ray Tune (random or Optuna, optionally with ASHA), or be a
`mixture_search`: proxy trials on Dirichlet draws of the mixture's group weights plus the EPS mixture, whose
scores a regression turns into a proposed mixture that a later stage (`proposed_from`) trains, once per cell.

Two stage kinds build on finished trials of earlier stages: `from_each` starts one trial from each
selected trial (a transfer matrix: every source task's model fine-tuned on every target task of a
`per_task` list), and `merge` makes models by merging selected trials' weights, one per group, instead
of training (`imlsweep.train.merging`), then evaluates them like any trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from imlsweep.config import StrictModel, read_yaml, validate_config
from imlsweep.data.mixture import GroupKind

Scalar = str | int | float | bool | None


class Cell(StrictModel):
    name: str = Field(description="short name, part of every trial name of the cell")
    set: dict[str, Any] = Field(default_factory=dict, description="dotted key -> value overrides")
    labels: dict[str, Scalar] = Field(default_factory=dict,
                                      description="result columns this cell stands for (e.g. instructions: true)")
    depends_on: str | None = Field(default=None, description="trial of an earlier stage to start from")


class TrialSelection(StrictModel):
    """Trials of an earlier stage: those whose labels have every value in `where` (e.g. `{cell: tk_100}`)."""

    stage: str
    where: dict[str, Scalar] = Field(default_factory=dict, description="label -> value the trials have")


class FromEach(TrialSelection):
    """One trial per selected trial, started from its weights (a transfer matrix's sources)."""

    same_task: bool = Field(default=False, description="also the pair of a source task with itself as target")


class MergeStage(TrialSelection):
    """The selected trials' models merged, one merged model per group (labels `merged_group` and
    `source_models`, how many it merges), instead of training. How (`merge.method`, `merge.scale`,
    `merge.density`) are trial keys (`imlsweep.train.merging.MergeConfig`): `set` or sweep them."""

    group_label: str = Field(default="trained_task", description="the label whose values `groups` list")
    groups: dict[str, list[Scalar]] | None = Field(default=None, description="group name -> values of "
                                                   "`group_label`; null: one model merging all selected trials")
    keys: list[str] = Field(default_factory=list, description="dotted keys set to the group's values (e.g. eval.tasks)")
    versus: TrialSelection | None = Field(default=None, description="multi-task trials the report compares with")


class PerTask(StrictModel):
    """One trial per task: each key in `keys` is set to the one-task list `[task]`."""

    tasks: list[str] = Field(min_length=1)
    keys: list[str] = Field(default_factory=lambda: ["mixture.tasks"], min_length=1)


class Distribution(StrictModel):
    kind: Literal["uniform", "loguniform", "randint", "choice"]
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds_or_values(self) -> "Distribution":
        if self.kind == "choice" and not self.values:
            raise ValueError("choice needs `values`")
        if self.kind != "choice" and (self.low is None or self.high is None or self.low >= self.high):
            raise ValueError(f"{self.kind} needs `low` < `high`")
        return self


class Search(StrictModel):
    algorithm: Literal["random", "optuna"] = "random"
    num_samples: int = Field(ge=1)
    metric: str = Field(description="a metric the trial reports, e.g. eval/score or loss")
    mode: Literal["min", "max"] = "max"
    scheduler: Literal["none", "asha"] = "none"
    # ASHA, counted in the trial's reports to Tune (one per `train.log_every` steps, and validations)
    grace_period: int = Field(default=1, ge=1, description="reports every sample makes before it can be stopped")
    reduction_factor: float = Field(default=4, gt=1, description="ASHA keeps 1/reduction_factor at each rung")
    max_reports: int = Field(default=100, ge=1, description="ASHA's max_t: the last rung")
    space: dict[str, Distribution] = Field(min_length=1, description="dotted key -> distribution")
    seed: int = 0


class ProposalConstraints(StrictModel):
    """Where the proposed mixture may lie: on the simplex over the groups, within these bounds."""

    min_weight: float = Field(default=0.005, ge=0, lt=1, description="every group's weight at least this")
    max_ratio_to_eps: float | None = Field(default=None, ge=1, description="no group's weight above this multiple "
                                           "of its weight in the EPS mixture; null: no such bound")


class MixtureSearch(StrictModel):
    """Proxy trials on `mixtures` Dirichlet(`concentration`) draws of the weights of `groups` (set as the
    mixture's `<over>_proportions`), plus the stage's own (EPS/temperature) mixture; when they have finished,
    ridge regression of `metric` on the log-weights, and the constrained mixture it predicts best."""

    over: GroupKind = Field(description="benchmark, category or task: what the weights are over")
    groups: list[str] = Field(min_length=2, description="the benchmarks, categories or task ids weighed")
    mixtures: int = Field(ge=2, description="Dirichlet draws, each one proxy trial (the EPS mixture is one more)")
    concentration: float = Field(default=1.0, gt=0, description="the Dirichlet's parameter, the same for every group")
    seed: int = Field(default=0, description="seed of the draws and of the proposal's search")
    metric: str = Field(default="eval/combined", description="the aggregated validation score a trial reports")
    mode: Literal["min", "max"] = "max"
    ridge_alpha: float = Field(default=1.0, gt=0, description="L2 penalty of the ridge regression")
    min_fitted: int = Field(default=4, ge=3, description="completed proxy trials a proposal needs")
    constraints: ProposalConstraints = ProposalConstraints()

    @model_validator(mode="after")
    def _feasible(self) -> "MixtureSearch":
        if len(set(self.groups)) != len(self.groups):
            raise ValueError(f"groups repeat: {sorted(g for g in set(self.groups) if self.groups.count(g) > 1)}")
        if self.constraints.min_weight * len(self.groups) > 1:
            raise ValueError(f"constraints.min_weight: {self.constraints.min_weight} x {len(self.groups)} groups "
                             "is more than 1")
        if self.min_fitted > self.mixtures + 1:
            raise ValueError(f"min_fitted: {self.min_fitted} is more than the {self.mixtures + 1} proxy trials")
        return self


class Stage(StrictModel):
    name: str
    set: dict[str, Any] = Field(default_factory=dict, description="dotted key -> value on top of `base`")
    labels: dict[str, Scalar] = Field(default_factory=dict, description="result columns of every trial")
    axes: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> grid values")
    cells: list[Cell] = Field(default_factory=list)
    per_task: PerTask | None = None
    depends_on: str | None = Field(default=None, description="trial of an earlier stage to start from")
    search: Search | None = None
    replicates: int = Field(default=1, ge=1, description="trials per configuration, seeds train.seed + 0..N-1; "
                            "the report pools them into intervals")
    mixture_search: MixtureSearch | None = None
    proposed_from: str | None = Field(default=None, description="an earlier mixture_search stage: this stage trains "
                                      "its proposed mixture, once per cell (e.g. at proxy and at target scale)")
    from_each: FromEach | None = Field(default=None, description="start one trial from each selected trial")
    merge: MergeStage | None = Field(default=None, description="merge the selected trials' models instead of training")

    @field_validator("axes")
    @classmethod
    def _non_empty_axes(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in axes.items():
            if not values:
                raise ValueError(f"axis {key!r} has no values")
        return axes

    @model_validator(mode="after")
    def _search_alone(self) -> "Stage":
        if self.search is not None and (self.axes or self.cells or self.per_task or self.replicates > 1):
            raise ValueError("a stage with `search` cannot also have axes, cells, per_task or replicates")
        built_on = self.from_each or self.merge
        if self.mixture_search is not None and (self.axes or self.cells or self.per_task or self.search
                                                or self.replicates > 1 or self.proposed_from or built_on):
            raise ValueError("a stage with `mixture_search` cannot also have axes, cells, per_task, search, "
                             "replicates, proposed_from, from_each or merge")
        if self.proposed_from is not None and (self.axes or self.per_task or self.search or self.replicates > 1
                                               or built_on):
            raise ValueError("a stage with `proposed_from` trains one mixture per cell: it cannot also have axes, "
                             "per_task, search, replicates, from_each or merge")
        for kind in ("from_each", "merge"):
            if getattr(self, kind) is None:
                continue
            clashes = {"from_each": kind == "merge" and self.from_each is not None, "depends_on": self.depends_on,
                       "search": self.search, "replicates": self.replicates > 1,
                       "cells with depends_on": any(cell.depends_on for cell in self.cells),
                       "per_task": kind == "merge" and self.per_task is not None}
            clashing = [key for key, present in clashes.items() if present]
            if clashing:
                raise ValueError(f"a stage with `{kind}` cannot also have {', '.join(clashing)}")
        names = [cell.name for cell in self.cells]
        if len(set(names)) != len(names):
            raise ValueError(f"cell names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
        return self


class Resources(StrictModel):
    """What each trial holds; written into every trial's `train.workers`, `train.cpus_per_worker` and
    `train.gpus_per_worker` (a sweep's trials do not set those themselves)."""

    workers: int = Field(default=1, ge=1, description="Ray Train workers per trial")
    gpus_per_worker: float = Field(default=0, ge=0, description="a fraction shares a GPU between workers")
    cpus_per_worker: float = Field(default=1, gt=0)
    gpu_memory_gb: float | None = Field(default=None, gt=0, description="memory of one GPU in GiB (80 for an "
                                        "A100 80GB); `sweep plan` and `sweep run` refuse a trial that needs more; "
                                        "null: not checked")
    host_memory_gb: float | None = Field(default=None, gt=0, description="host memory of one node in GiB, checked "
                                         "against the trial's workers on a node; null: not checked")
    gpus_per_node: int = Field(default=8, ge=1, description="GPUs of one node: how many of a trial's workers "
                               "share a node's host memory")
    in_process: bool = Field(
        default=True, description="single-worker trials run inside Tune's reused trial "
        "process: imports, worker start and process group are paid once per process, not per trial; such trials "
        "keep no checkpoints and rerun from the start if cut off")


class SweepRetention(StrictModel):
    """What a sweep keeps of its finished trials (which checkpoints a trial keeps while it runs is the
    trial's `train.keep`)."""

    checkpoints: Literal["keep", "delete_when_done"] = Field(
        default="delete_when_done", description="a finished trial needs no checkpoint to resume")
    hf_model: Literal["all", "dependencies", "none"] = Field(
        default="dependencies", description="export final weights for every trial, or only those a later stage starts from")


class Tracking(StrictModel):
    wandb: bool = True
    project: str = "imlsweep"
    entity: str | None = None
    mode: Literal["auto", "online", "offline"] = Field(
        default="auto", description="auto: online when W&B credentials are found (WANDB_API_KEY, or a netrc file: NETRC or ~/.netrc), offline otherwise")


class CorpusFigures(StrictModel):
    """What a corpus would say, for a plan made where the sweep's corpus is not built."""

    tokens_per_example: float = Field(default=512, gt=0)
    examples_per_task_all: float = Field(default=3150, gt=0, description="train pool of a task when "
                                         "samples_per_task is all")
    training_tasks: float = Field(default=757, gt=0, description="tasks in a mixture whose tasks are `all`")


MEASURED = "measured from the built corpus; `estimate.without_corpus.{}` stands in when it is not built"


class Estimate(StrictModel):
    """Throughput the plan divides by (set it for your hardware); examples and tokens come from the
    corpus (`imlsweep.sweep.estimate`)."""

    retired_keys = {"epochs": "the plan reads each trial's own `train.epochs`",
                    "tokens_per_example": MEASURED.format("tokens_per_example"),
                    "examples_per_task_all": MEASURED.format("examples_per_task_all"),
                    "training_tasks": MEASURED.format("training_tasks"),
                    "examples_per_trial": "the mixture plan counts each trial's examples; set `mixture.total_examples`"}

    gpu_tokens_per_s: float = Field(default=3000, gt=0, description="training tokens/s of one GPU")
    cpu_tokens_per_s: float = Field(default=300, gt=0, description="training tokens/s of one CPU worker "
                                    "(trials with gpus_per_worker 0)")
    eval_items_per_s: float = Field(default=20, gt=0, description="evaluation items/s of one trial")
    startup_s: float = Field(default=30, ge=0, description="a trial's fixed time: workers, model, data, export")
    model_params: float | None = Field(default=None, description="parameters; derived from the model config if null")
    checkpoint_bytes_per_param: float = Field(default=2, description="2 for a bf16 Hugging Face export")
    without_corpus: CorpusFigures = CorpusFigures()


class SweepSpec(StrictModel):
    retired_keys = {"max_failures": "renamed to `trial_retries`"}

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    corpus: str = Field(description="corpus config YAML (built once, cached) or a built corpus directory")
    base: dict[str, Any] = Field(default_factory=dict, description="a partial TrialConfig")
    stages: list[Stage] = Field(min_length=1)
    resources: Resources = Resources()
    concurrency: int | Literal["auto"] = "auto"
    trial_retries: int = Field(default=2, ge=0, description="times Ray Tune runs a failed trial again (a trial's "
                               "own worker restarts are its `train.worker_restarts`)")
    storage: str = Field(default="runs", description="a folder or an s3:// / gs:// URI; the sweep directory "
                         "is <storage>/<name>")
    retention: SweepRetention = SweepRetention()
    tracking: Tracking = Tracking()
    estimate: Estimate = Estimate()

    @field_validator("stages")
    @classmethod
    def _unique_stage_names(cls, stages: list[Stage]) -> list[Stage]:
        names = [stage.name for stage in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names repeat: {names}")
        searches = set()
        for index, stage in enumerate(stages):
            if stage.proposed_from is not None and stage.proposed_from not in searches:
                raise ValueError(f"{index}.proposed_from: {stage.proposed_from!r} is not an earlier stage with "
                                 f"mixture_search (those: {sorted(searches)})")
            if stage.mixture_search is not None:
                searches.add(stage.name)
        return stages


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a spec; `corpus` is made relative to the spec file, not the working dir.

    Top-level keys starting with `x-` hold YAML anchors (a task list, shared cells) and are dropped.
    """
    path = Path(path)
    data = read_yaml(path) or {}
    if isinstance(data, dict):
        data = {key: value for key, value in data.items() if not str(key).startswith("x-")}
    spec = validate_config(data, SweepSpec, str(path))
    corpus = Path(spec.corpus)
    if not corpus.is_absolute():
        spec.corpus = str((path.parent / corpus).resolve())
    return spec
