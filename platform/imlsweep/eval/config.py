"""The eval suite of a trial (`TrialConfig.eval`) or of `imlsweep eval run`, and what a trial scores while it
trains (`every_steps`, `validation`): the same settings on validation instances, kept cheap by an item limit."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from imlsweep.config import StrictModel
from imlsweep.corpus.schema import Split
from imlsweep.data.encodings import EncodingConfig

EvalMode = Literal["auto", "generation", "rank"]
VALIDATION_PREFIX = "val"  # validation scores are reported as val/<name> (eval/<name> after training)


class ValidationConfig(StrictModel):
    """The instances a trial scores every `eval.every_steps` steps, with the eval suite's other settings."""

    tasks: list[str] | None = Field(default=None, description="task ids; null = the eval suite's tasks (every "
                                    "task with instances in `split` when those are null too)")
    split: Split = Field(default="validation", description="which instances of those tasks")
    max_per_task: int = Field(default=8, ge=1, description="first N instances per task: each validation "
                              "generates for tasks x N x shots items")


class EvalConfig(StrictModel):
    tasks: list[str] | None = Field(default=None, description="task ids; null = the corpus's eval tasks")
    split: Split = Field(default="test", description="which instances")
    max_per_task: int | None = Field(default=100, ge=1, description="first N instances per task; null = all")
    encoding: EncodingConfig | None = Field(default=None, description="prompt encoding; null = the trial mixture's")
    shots: list[int] = Field(default=[0], min_length=1, description="demonstrations per prompt, one run each")
    mode: EvalMode = Field(default="auto", description="auto: rank classification when an item has "
                           "candidates, generation otherwise")
    max_new_tokens: int = Field(default=256, ge=1, description="greedy decoding stops at EOS or here")
    max_source_tokens: int | None = Field(default=None, ge=1, description="prompts are cut to their last "
                                          "N tokens; null = what the model's context leaves")
    batch_size: int = Field(default=16, ge=1)
    rank_choice: Literal["sum", "per_char"] = Field(
        default="sum", description="which candidate score picks the answer (both are recorded)")
    group_by: Literal["category", "benchmark"] = Field(default="category", description="OPT-IML columns")
    task_groups: dict[str, list[str]] = Field(
        default_factory=dict, description="one task made of sub-tasks or of the same task in several "
        "benchmarks: name -> task ids or glob patterns (e.g. mmlu: ['mmlu_*'])")
    largest_categories: int | None = Field(
        default=None, ge=1, description="sample-efficiency view: report the N largest categories, club "
        "the rest as 'others'; null = no clubbing")
    seed: int = Field(default=0, description="seed of sampling and demonstrations")
    every_steps: int | None = Field(default=None, ge=1, description="score `validation` every N optimizer steps "
                                    "and after the last one (reported as val/...); null = no validation")
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    best_metric: str = Field(default=f"{VALIDATION_PREFIX}/combined", pattern=rf"^{VALIDATION_PREFIX}/.+",
                             description="the validation score `train.keep: best` keeps the highest of: "
                             "val/combined (OPT-IML's combined score: per-task ROUGE-L, accuracy for ranked "
                             "tasks, rolled up), val/rougeL, val/<shots>shot, val/<level>/<shots>shot, ...")

    def validation_suite(self) -> EvalConfig:
        """These settings on the validation instances."""
        return self.model_copy(update={"tasks": self.validation.tasks if self.validation.tasks is not None
                                       else self.tasks, "split": self.validation.split,
                                       "max_per_task": self.validation.max_per_task})

    @field_validator("shots")
    @classmethod
    def _validate_shots(cls, value: list[int]) -> list[int]:
        if any(shot < 0 for shot in value) or len(set(value)) != len(value):
            raise ValueError("shots must be distinct non-negative integers")
        return value

