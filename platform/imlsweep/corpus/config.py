"""The corpus config: which sources to read, how categories unify, the per-task caps and the split.

Paths in a corpus config are relative to the config file's folder; `pkg:NAME` names data the package
ships (`pkg:superni` is the bundled SuperNI sample). `load_corpus_config` returns the config with every
path resolved, so the copy written next to a built corpus can be read from anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from imlsweep.assets import ASSETS_DIR
from imlsweep.config import StrictModel, dump_config, read_yaml, validate_config
from imlsweep.corpus.schema import InstructionType

PACKAGE_PREFIX = "pkg:"


class SuperNISource(StrictModel):
    """A directory in the allenai/natural-instructions layout: `tasks/*.json` and split files."""

    format: Literal["superni"]
    benchmark: str = Field("superni", description="Benchmark name stored on every row of these tasks.")
    path: str = Field(description="The dataset folder (holds `tasks/` and `splits/`).")
    split_dir: str = Field(
        "splits/default",
        description="Folder (relative to `path`) with train_tasks.txt, test_tasks.txt and excluded_tasks.txt. "
        "Tasks in test_tasks.txt are eval tasks, tasks in excluded_tasks.txt are not built, all others train.",
    )


class RecordFields(StrictModel):
    """Column (or JSON key) names of a field-based export; only `input` and `outputs` are required."""

    task_id: str = Field("task_id", description="Column naming the task; when absent the file name is the task id.")
    input: str = "input"
    outputs: str = Field("outputs", description="A list of reference outputs, or one string.")
    candidates: str = Field("candidates", description="Optional list of answer options for rank classification.")
    template_id: str = Field("template_id", description="Optional prompt template id (one row per example and template).")
    example_id: str = Field("example_id", description="Optional example id; rows of one example share it.")
    category: str = "category"
    data_source: str = "data_source"
    instruction_type: str = "instruction_type"
    definition: str = "definition"
    language: str = "language"


class RecordsSource(StrictModel):
    """Already-rendered or field-based instance-level tasks (PromptSource and FLAN exports): JSON Lines or
    Parquet files. Per-task metadata comes from columns or from the `metadata` YAML (task id -> fields)."""

    format: Literal["jsonl", "parquet"]
    benchmark: str
    path: str = Field(description="One file, or a folder whose *.jsonl / *.parquet files are read in name order.")
    metadata: str | None = Field(
        None,
        description="YAML mapping task id -> {category, data_source, instruction_type, definition, language}; "
        "its values win over columns.",
    )
    instruction_type: InstructionType = "instance"
    language: str = "English"
    fields: RecordFields = RecordFields()


class HFTask(StrictModel):
    """One task read with `datasets.load_dataset` (a hub name or a local path)."""

    task_id: str
    dataset: str = Field(description="Hub name or local path, as `datasets.load_dataset` takes it.")
    name: str | None = Field(None, description="Dataset configuration name.")
    split: str = "train"
    data_files: list[str] | None = Field(None, description="Files for builder datasets such as json or csv.")
    input: str | list[str] = Field(
        description="Input field; with several, the input is one `field: value` line per field."
    )
    output: str = Field(description="Output field: a string, a class label or a list of strings.")
    candidates: str | None = Field(None, description="Optional field with the answer options.")
    category: str
    data_source: str | None = Field(None, description="Defaults to the dataset name.")


class HFSource(StrictModel):
    """Keyword-style benchmarks (CrossFit, ExMix, T5, UnifiedSKG): one hand-written instruction per task."""

    format: Literal["hf"]
    benchmark: str
    instructions: str = Field(description="YAML mapping task id -> its hand-written instruction.")
    instruction_type: InstructionType = "keywords"
    language: str = "English"
    tasks: list[HFTask] = Field(min_length=1)


Source = Annotated[Union[SuperNISource, RecordsSource, HFSource], Field(discriminator="format")]


class SplitConfig(StrictModel):
    """Which tasks are evaluated and which of their instances are test, validation and training pool."""

    use_source_splits: bool = Field(True, description="Take eval/excluded task lists from SuperNI split files.")
    fully_held_out_categories: list[str] = Field(
        [], description="Whole categories kept out of training: their tasks are eval tasks, level fully_held_out."
    )
    held_out_tasks: list[str] = Field(
        [], description="Further eval tasks (unseen tasks of seen categories: level partially_supervised)."
    )
    validation_tasks: list[str] = Field(
        [], description="Eval tasks used for model selection (manifest split `validation`, not `test`)."
    )
    eval_test_size: int = Field(100, ge=0, description="First N instances of each eval task: its test set.")
    eval_validation_size: int = Field(10, ge=0, description="Next N instances of each eval task: its validation set.")
    supervised_tasks: list[str] | None = Field(
        None, description="Training tasks that keep held-out instances (fully supervised); None = all."
    )
    supervised_test_size: int = Field(0, ge=0, description="First N instances of a training task held out as test.")
    supervised_validation_size: int = Field(0, ge=0, description="Next N instances held out as validation.")

    @model_validator(mode="after")
    def _eval_task_lists_disjoint(self) -> "SplitConfig":
        overlap = set(self.validation_tasks) & set(self.held_out_tasks)
        if overlap:
            raise ValueError(f"tasks both in validation_tasks and held_out_tasks: {sorted(overlap)}")
        return self


class CorpusConfig(StrictModel):
    """A corpus: its sources and how they become one set of tasks. Only `sources` is required."""

    name: str = "corpus"
    seed: int = Field(0, description="Seeds the per-task cap sampling.")
    sources: list[Source] = Field(min_length=1)
    category_map: dict[str, str] = Field(
        {}, description="Unifies category names across benchmarks (case-insensitive keys), e.g. "
        "'hate speech detection' -> 'Toxic Language Detection'."
    )
    categories: list[str] | None = Field(
        None, description="Known categories after mapping; a task in any other category is invalid. None = any."
    )
    task_cap: int = Field(100_000, ge=1, description="At most M examples per task, sampled with the seed.")
    benchmark_task_caps: dict[str, int] = Field({}, description="Per-benchmark cap overrides, e.g. flan: 30000.")
    languages: list[str] | None = Field(
        None, description="Keep only tasks whose every language is listed (e.g. [English]); None = all."
    )
    split: SplitConfig = SplitConfig()
    shared_data_source: Literal["keep", "drop_train", "error"] = Field(
        "keep", description="A training task sharing a data source with an eval task: keep it, drop it, or fail."
    )
    removals: str | None = Field(
        None, description="Text file of task ids (one a line, # comments) removed on the next build, e.g. after "
        "reviewing `imlsweep corpus leakage`."
    )

    def cap_for(self, benchmark: str) -> int:
        return self.benchmark_task_caps.get(benchmark, self.task_cap)

    def canonical_category(self, category: str) -> str:
        mapping = {key.strip().lower(): value for key, value in self.category_map.items()}
        return mapping.get(category.strip().lower(), category.strip())


def resolve_path(value: str, base: Path) -> str:
    if value.startswith(PACKAGE_PREFIX):
        return str(ASSETS_DIR / value[len(PACKAGE_PREFIX):])
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def resolve_dataset(value: str, base: Path) -> str:
    """A local dataset path resolves like any path; anything else is a hub name and stays as it is."""
    if value.startswith(PACKAGE_PREFIX) or Path(value).is_absolute() or (base / value).exists():
        return resolve_path(value, base)
    return value


def resolve_paths(config: CorpusConfig, base: Path) -> CorpusConfig:
    config = config.model_copy(deep=True)
    for source in config.sources:
        if isinstance(source, HFSource):
            source.instructions = resolve_path(source.instructions, base)
            for task in source.tasks:
                task.dataset = resolve_dataset(task.dataset, base)
                if task.data_files:
                    task.data_files = [resolve_path(item, base) for item in task.data_files]
        else:
            source.path = resolve_path(source.path, base)
            if isinstance(source, RecordsSource) and source.metadata:
                source.metadata = resolve_path(source.metadata, base)
    if config.removals:
        config.removals = resolve_path(config.removals, base)
    return config


def load_corpus_config(path: str | Path) -> CorpusConfig:
    """Read and validate a corpus YAML; paths inside resolve against the file's folder."""
    path = Path(path)
    config = validate_config(read_yaml(path) or {}, CorpusConfig, str(path))
    return resolve_paths(config, path.resolve().parent)


def corpus_config_yaml(config: CorpusConfig) -> str:
    return dump_config(config)
