"""The corpus config: which sources to read, how categories unify, the per-task caps and the split.

A source is one benchmark in one published format, read by the adapter of the same name in
`corpus/adapters/` (`format` picks it). Paths in a corpus config are relative to the config file's
folder; `pkg:NAME` names data the package ships (`pkg:superni` is the bundled SuperNI sample,
`pkg:opt_iml_sample` a small sample of every other format). `load_corpus_config` returns the config
with every path resolved, so the copy written next to a built corpus can be read from anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, field_validator, model_validator

from imlsweep.assets import ASSETS_DIR
from imlsweep.config import StrictModel, dump_config, read_yaml, validate_config
from imlsweep.corpus.schema import InstructionType, Split

PACKAGE_PREFIX = "pkg:"
# The source's own split files to read (keys, named as the benchmark names them) -> the corpus split
# their rows keep, or None: the build splits those rows by position (split.eval_test_size ...).
SplitMap = dict[str, Split | None]
SPLITS_HELP = ("The source's split files to read (keys, as the benchmark names them) and the corpus split their rows "
               "keep (train, validation or test); null: the build splits those rows by position, like a source "
               "without splits (split.eval_test_size ...).")
FlanTemplateType = Literal["zs_opt", "zs_noopt", "fs_opt", "fs_noopt"]
# How a structured field becomes text (corpus/adapters/renderers.py says what each one writes).
Renderer = Literal["text", "lines", "json", "table", "triples"]


def check_split_map(value: SplitMap | None) -> SplitMap | None:
    if value is not None and not value:
        raise ValueError("name at least one split")
    return value


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

    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("path",)


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
    """Already-rendered, field-based tasks (an export of any benchmark): JSON Lines or Parquet files. Per-task
    metadata comes from columns or from the `metadata` YAML (task id -> fields)."""

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

    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("path", "metadata")


class HFTask(StrictModel):
    """One task read with `datasets.load_dataset` (a hub name or a local path). Field names may be dotted
    paths into nested values (`answers.text`, `translation.de`); a list met on the way is mapped over."""

    task_id: str
    dataset: str = Field(description="Hub name or local path, as `datasets.load_dataset` takes it.")
    name: str | None = Field(None, description="Dataset configuration name.")
    split: str = "train"
    data_files: list[str] | None = Field(None, description="Files for builder datasets such as json or csv.")
    input: str | list[str] = Field(
        description="Input field; with several, the input is one `field: value` line per field."
    )
    output: str = Field(description="Output field: a string, a class label, a number, or a list (one reference "
                        "per item); any other value is rendered to one reference.")
    candidates: str | None = Field(None, description="Optional field with the answer options (a list).")
    render: dict[str, Renderer] = Field(
        {}, description="Field -> renderer for values that are not plain text: text (default), lines, json, table "
        "(UnifiedSKG's `col : ... row 1 : ...`) or triples (`s : p : o | ...`). A renderer named for `output` "
        "renders the whole value as one reference.")
    category: str
    data_source: str | None = Field(None, description="Defaults to the dataset name.")


class HFSource(StrictModel):
    """Keyword-style benchmarks taken from `datasets` (ExMix, T5): one hand-written instruction per task."""

    format: Literal["hf"]
    benchmark: str
    instructions: str = Field(description="YAML mapping task id -> its hand-written instruction.")
    instruction_type: InstructionType = "keywords"
    language: str = "English"
    tasks: list[HFTask] = Field(min_length=1)

    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("instructions",)


class PromptSourceTask(StrictModel):
    dataset: str = Field(description="The dataset as promptsource names its template folder: `super_glue/rte`, "
                         "`ag_news`.")
    category: str
    task_id: str | None = Field(None, description="Defaults to the dataset with `/` as `_` (super_glue_rte).")
    data_source: str | None = Field(None, description="Defaults to the dataset.")
    splits: SplitMap | None = Field(None, description="Overrides the source's `splits` for this task.")

    _non_empty = field_validator("splits")(check_split_map)


class PromptSourceSource(StrictModel):
    """PromptSource templates applied to local copies of the datasets they name: every template of a task
    renders every example (one row per example and template); instance-level instructions."""

    format: Literal["promptsource"]
    benchmark: str = "promptsource"
    templates: str = Field(description="promptsource's templates folder (`promptsource/templates` in its "
                           "repository): `<templates>/<dataset>/templates.yaml`.")
    data: str = Field(description="Folder of local dataset copies: `<data>/<dataset>/` is a `save_to_disk` folder, "
                      "or holds `<split>.jsonl`, `<split>.parquet` or `<split>-*.parquet` with the dataset's own fields.")
    original_task_only: bool = Field(False, description="Only templates whose metadata says original_task: true "
                                     "(as OPT-IML used PromptSource).")
    splits: SplitMap = Field({"train": None}, description=SPLITS_HELP)
    language: str = "English"
    tasks: list[PromptSourceTask] = Field(min_length=1)

    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("templates", "data")
    _non_empty = field_validator("splits")(check_split_map)


class P3Task(StrictModel):
    dataset: str = Field(description="The subset-name prefix of the task's templates: `super_glue_rte` groups the "
                         "subsets `super_glue_rte_<template>`.")
    category: str
    templates: list[str] | None = Field(
        None, description="Template names (subset `<dataset>_<template>`); null: every subset starting with "
        "`<dataset>_` except `_score_eval` ones and those of a longer prefix another task names.")
    task_id: str | None = Field(None, description="Defaults to the dataset.")
    data_source: str | None = Field(None, description="Defaults to the dataset.")
    splits: SplitMap | None = Field(None, description="Overrides the source's `splits` for this task.")

    _non_empty = field_validator("splits")(check_split_map)


class P3Source(StrictModel):
    """P3 as published (PromptSource already applied): one subset folder per (dataset, template) with
    `inputs_pretokenized`, `targets_pretokenized` and, for multiple choice, `answer_choices`."""

    format: Literal["p3"]
    benchmark: str = "promptsource"
    path: str = Field(description="P3's data folder: one folder per subset, holding `<split>-*.parquet` (the hub's "
                      "layout), `<split>.parquet` or `<split>.jsonl`.")
    splits: SplitMap = Field({"train": None}, description=SPLITS_HELP)
    language: str = "English"
    tasks: list[P3Task] = Field(min_length=1)

    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("path",)
    _non_empty = field_validator("splits")(check_split_map)


class FlanSource(StrictModel):
    """Flan Collection exports: rows with inputs, targets, task_name, task_source and template_type, in JSON
    Lines or Parquet shards; rows are grouped into tasks by task_name."""

    format: Literal["flan"]
    benchmark: str = "flan"
    path: str = Field(description="One shard, or a folder whose *.jsonl and *.parquet shards are read in name order.")
    metadata: str | None = Field(
        None, description="YAML `tasks:` mapping task_name (as in the export) -> {category, data_source, "
        "definition, language}; the export has no category, so every task needs one here.")
    task_sources: list[str] | None = Field(
        None, description="Keep only these task_source values (e.g. [Flan2021]); the others are left out and "
        "listed in stats.json. null = all.")
    template_types: list[FlanTemplateType] | None = Field(
        None, description="Keep only rows of these template types (e.g. [zs_opt, zs_noopt]); null = all.")
    task_prefix: str = Field("", description="Prepended to every task id (task ids are task_name with characters "
                             "outside letters, digits and . _ + - replaced by _).")
    candidates_from_options: bool = Field(
        True, description="Take a row's candidates from the last options list in its input (a line ending in ':' "
        "followed by '- option' lines), when its target is one of them.")
    language: str = "English"

    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("path", "metadata")


class CrossFitTask(StrictModel):
    task: str = Field(description="CrossFit's task name: the folder `<path>/<task>/`.")
    category: str
    task_id: str | None = Field(None, description="Defaults to the task name.")
    data_source: str | None = Field(None, description="Defaults to the task name.")
    candidates: Literal["none", "options", "labels"] | None = Field(
        None, description="Overrides the source's `candidates` for this task.")


class CrossFitSource(StrictModel):
    """CrossFit's data layout: `<task>/<task>[_<variant>]_{train,dev,test}.tsv`, each line the input, a tab and
    the output (several answers as further tab-separated columns, as CrossFit writes them)."""

    format: Literal["crossfit"]
    benchmark: str = "crossfit"
    path: str = Field(description="CrossFit's data folder (one folder per task).")
    instructions: str = Field(description="YAML mapping task id -> its hand-written instruction.")
    variant: str | None = Field(
        None, description="The part between task name and split in the file names: `full_42` reads "
        "`<task>_full_42_train.tsv`, `32_100` a few-shot sample; null reads `<task>_train.tsv`.")
    splits: SplitMap = Field({"train": "train", "dev": "validation", "test": "test"}, description=SPLITS_HELP)
    candidates: Literal["none", "options", "labels"] = Field(
        "options", description="options: the `(A) ... (B) ...` options in the input, when the answer is one of "
        "them; labels: the task's distinct answers (classification tasks); none.")
    language: str = "English"
    tasks: list[CrossFitTask] = Field(min_length=1)

    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("path", "instructions")
    _non_empty = field_validator("splits")(check_split_map)


class UnifiedSKGTask(StrictModel):
    task: str = Field(description="The task's folder `<path>/<task>/` (UnifiedSKG's task name: dart, wikitq ...).")
    category: str
    task_id: str | None = Field(None, description="Defaults to the task name.")
    data_source: str | None = Field(None, description="Defaults to the task name.")


class UnifiedSKGSource(StrictModel):
    """UnifiedSKG's structured-knowledge examples (`text_in`, `struct_in`, `seq_out`), each task a folder of
    split files; the input is built as UnifiedSKG feeds its models (knowledge concatenated)."""

    format: Literal["unifiedskg"]
    benchmark: str = "unifiedskg"
    path: str = Field(description="Folder of tasks: `<path>/<task>/<split>.jsonl|.json|.parquet`.")
    instructions: str = Field(description="YAML mapping task id -> its hand-written instruction.")
    splits: SplitMap = Field({"train": "train", "dev": "validation", "test": "test"}, description=SPLITS_HELP)
    language: str = "English"
    tasks: list[UnifiedSKGTask] = Field(min_length=1)

    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("path", "instructions")
    _non_empty = field_validator("splits")(check_split_map)


class ReasoningFields(StrictModel):
    """Field names of JSON Lines / Parquet reasoning files (TSV files have FLAN's fixed column order)."""

    question: str = "question"
    rationale: str = "chain_of_thought"
    answer: str = "answer"


class ReasoningTask(StrictModel):
    dataset: str = Field(description="The file-name stem: `gsm8k` reads `<path>/gsm8k_<split>.tsv` (or .jsonl, .parquet).")
    category: str = "Reasoning"
    task_id: str | None = Field(None, description="Defaults to the dataset.")
    data_source: str | None = Field(None, description="Defaults to the dataset.")


class ReasoningSource(StrictModel):
    """Chain-of-thought datasets as OPT-IML's reasoning portion uses them: question, rationale, answer, with the
    target written as `<rationale> The answer is <answer>.` (or the answer alone). FLAN's `cot_data` TSV layout
    (question, answer, chain of thought; `\\n` for line breaks) or JSON Lines / Parquet with named fields."""

    format: Literal["reasoning"]
    benchmark: str = "reasoning"
    path: str = Field(description="Folder of `<dataset>_<split>.tsv|.jsonl|.parquet` files.")
    target: Literal["rationale_and_answer", "answer"] = Field(
        "rationale_and_answer", description="rationale_and_answer: `<rationale> The answer is <answer>.`; answer: "
        "the answer alone.")
    definition: str | None = Field(
        None, description="The task instruction; null: \"Answer the following question by reasoning step by step.\" "
        "(rationale_and_answer) or \"Answer the following question.\" (answer).")
    fields: ReasoningFields = ReasoningFields()
    splits: SplitMap = Field({"train": None}, description=SPLITS_HELP)
    language: str = "English"
    tasks: list[ReasoningTask] = Field(min_length=1)

    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("path",)
    _non_empty = field_validator("splits")(check_split_map)


Source = Annotated[
    Union[SuperNISource, RecordsSource, HFSource, PromptSourceSource, P3Source, FlanSource, CrossFitSource,
          UnifiedSKGSource, ReasoningSource],
    Field(discriminator="format"),
]


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
    seed: int = Field(0, description="Seeds the per-task cap sampling and PromptSource's `choice` filter.")
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
        for name in source.PATH_FIELDS:
            if getattr(source, name) is not None:
                setattr(source, name, resolve_path(getattr(source, name), base))
        if isinstance(source, HFSource):
            for task in source.tasks:
                task.dataset = resolve_dataset(task.dataset, base)
                if task.data_files:
                    task.data_files = [resolve_path(item, base) for item in task.data_files]
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
