"""The mixture part of a trial: which tasks, how many examples each, how they are mixed and rendered.

Sweeps override its keys by dotted path (`mixture.eps`, `mixture.samples_per_task`,
`mixture.encoding.name`, `mixture.demonstrations.shots` ...). Load one from YAML with
`load_config(path, MixtureConfig)`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from imlsweep.config import StrictModel
from imlsweep.corpus.schema import Split
from imlsweep.data.demonstrations import DemonstrationsConfig
from imlsweep.data.encodings import EncodingConfig
from imlsweep.data.mixing import check_proportions, parse_benchmark_proportions
from imlsweep.errors import UserError

# The mixture key that sets the stream's shares over each kind of task group (one at a time), and the
# corpus manifest column that names a task's group of that kind.
PROPORTION_KEYS = {"benchmark": "benchmark_proportions", "category": "category_proportions",
                   "task": "task_proportions"}
GROUP_COLUMNS = {"benchmark": "benchmark", "category": "category", "task": "task_id"}
GroupKind = Literal["benchmark", "category", "task"]


class TaskSubsetConfig(StrictModel):
    size: int = Field(ge=1, description="number of tasks; subsets of one seed are nested across sizes")
    required: list[str] = Field(default_factory=list, description="task ids always included")


class CategorySubsetConfig(StrictModel):
    size: int = Field(ge=1, description="the k categories with most tasks")
    required: list[str] = Field(default_factory=list, description="categories always included")


class AddonConfig(StrictModel):
    """A source outside the task mixture that takes a fixed fraction of the stream."""

    name: str
    fraction: float = Field(gt=0, lt=1, description="share of the stream, e.g. 0.05 for 5% pre-training text")
    benchmark: str | None = Field(default=None, description="the corpus tasks of this benchmark (e.g. reasoning)")
    texts: str | None = Field(default=None, description="a .jsonl file with a 'text' field (or .txt, one document "
                                                        "per line): plain pre-training or dialogue text")
    loss: Literal["sequence", "target"] = Field(default="sequence", description="loss on the whole sequence or "
                                                                                "on the target only")

    @model_validator(mode="after")
    def _one_source(self) -> AddonConfig:
        if (self.benchmark is None) == (self.texts is None):
            raise ValueError("give exactly one of benchmark or texts")
        return self


class MixtureConfig(StrictModel):
    retired_keys = {"epochs": "renamed to `stream_multiple` (the stream's size in passes over the sampled "
                              "examples); passes of training over the stream are `train.epochs`"}

    tasks: list[str] | Literal["all"] = Field(default="all", description="task ids, or all training tasks")
    train_split: Split = Field(
        default="train", description="which of each task's rows are trained on")
    samples_per_task: int | Literal["all"] = Field(
        default="all", description="k per task: n = min(k, N); seeded, nested across k, train rows only")
    sample_seed: int | None = Field(default=None, description="seed of the per-task samples; null: the mixture's "
                                    "seed. Set it so cells of a grid (or replicates) share their subsets")
    eps: float | None = Field(default=None, gt=0, description="example-proportional mixing cap; null = no cap")
    temperature: float = Field(default=1.0, gt=0)
    benchmark_proportions: str | dict[str, float] | None = Field(
        default=None, description='e.g. "4/2/20/25/45/2/2" over crossfit/exmix/flan/superni/promptsource/t5/'
                                  'unifiedskg, or {benchmark: weight}; with tasks: all, a benchmark without a '
                                  'weight (reasoning, or 0) is left out; null = the natural (capped) mix')
    category_proportions: dict[str, float] | None = Field(
        default=None, description="{category: weight}: each category's share of the stream, split among its tasks "
                                  "by their rates; with tasks: all, a category without a weight is left out")
    task_proportions: dict[str, float] | None = Field(
        default=None, description="{task: weight}: each task's share of the stream; with tasks: all, a task "
                                  "without a weight is left out")
    addons: list[AddonConfig] = Field(default_factory=list)
    task_subset: TaskSubsetConfig | None = None
    category_subset: CategorySubsetConfig | None = None
    encoding: EncodingConfig = Field(default_factory=EncodingConfig)
    demonstrations: DemonstrationsConfig = Field(default_factory=DemonstrationsConfig)
    max_length: int = Field(default=2048, ge=8, description="decoder-only: packed sequence length")
    truncation_side: Literal["left", "right"] = Field(default="left", description="decoder-only: which end of an "
                                                                                  "over-long example is cut")
    max_source_length: int = Field(default=1024, ge=1, description="seq2seq source limit; superni_def_pos drops "
                                                                   "demonstrations beyond it")
    max_target_length: int = Field(default=128, ge=1, description="seq2seq target limit")
    pack_seq2seq: bool = Field(default=False, description="seq2seq: sources side by side in encoder rows of "
                               "max_source_length, their targets in decoder rows of max_target_length, each "
                               "attending only to its own document; false: one padded example per row "
                               "(decoder-only rows are always packed)")
    total_examples: int | None = Field(default=None, ge=1, description="examples in the stream; null: "
                                       "stream_multiple x the sampled examples")
    stream_multiple: float = Field(default=1.0, gt=0, description="the stream's size in passes over the sampled "
                                   "examples, when total_examples is not set")
    seed: int = 0

    @field_validator("samples_per_task")
    @classmethod
    def _positive_samples(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be a positive number or 'all'")
        return value

    @field_validator("benchmark_proportions")
    @classmethod
    def _valid_proportions(cls, value: str | dict[str, float] | None) -> str | dict[str, float] | None:
        if value is not None:
            try:
                parse_benchmark_proportions(value)
            except UserError as error:
                raise ValueError(str(error).removeprefix("benchmark_proportions: ")) from None
        return value

    @field_validator("category_proportions", "task_proportions")
    @classmethod
    def _valid_group_proportions(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None:
            try:
                check_proportions(value)
            except UserError as error:
                raise ValueError(str(error)) from None
        return value

    @model_validator(mode="after")
    def _one_proportion_vector(self) -> MixtureConfig:
        given = [key for key in PROPORTION_KEYS.values() if getattr(self, key) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of {', '.join(given)}")
        return self

    def group_proportions(self) -> tuple[GroupKind, dict[str, float]] | None:
        """(group kind, {group: weight} summing to 1) of the proportion vector the mixture gives, or None."""
        for kind, key in PROPORTION_KEYS.items():
            value = getattr(self, key)
            if value is not None:
                return kind, parse_benchmark_proportions(value) if kind == "benchmark" else check_proportions(value)
        return None

    @model_validator(mode="after")
    def _addons_fit(self) -> MixtureConfig:
        if sum(a.fraction for a in self.addons) >= 1:
            raise ValueError("addons: fractions must sum to less than 1")
        names = [a.name for a in self.addons]
        if len(set(names)) != len(names):
            raise ValueError("addons: names must be unique")
        return self

    @model_validator(mode="after")
    def _resolve_sample_seed(self) -> MixtureConfig:
        if self.sample_seed is None:
            self.sample_seed = self.seed
        return self
