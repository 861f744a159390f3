"""The corpus row and manifest schemas: one row per (task, example, template), Arrow-native."""

from __future__ import annotations

from typing import Literal, get_args

import pyarrow as pa

# A row's `split`: which of its task's instances are the train pool, validation and test.
Split = Literal["train", "validation", "test"]
# A task's generalization level (OPT-IML), in reading order.
Level = Literal["fully_held_out", "partially_supervised", "fully_supervised"]
LEVELS: tuple[str, ...] = get_args(Level)
# Where a task's instructions live: one per task, one per instance (templates), or keywords only.
InstructionType = Literal["task", "instance", "keywords"]
INSTRUCTION_TYPES: tuple[str, ...] = get_args(InstructionType)

DEMONSTRATION_TYPE = pa.struct([("input", pa.string()), ("output", pa.string()), ("explanation", pa.string())])

ROW_SCHEMA = pa.schema(
    [
        ("task_id", pa.string()),
        ("benchmark", pa.string()),
        ("data_source", pa.string()),
        ("category", pa.string()),
        ("instruction_type", pa.string()),
        ("definition", pa.string()),
        ("positive_examples", pa.list_(DEMONSTRATION_TYPE)),
        ("negative_examples", pa.list_(DEMONSTRATION_TYPE)),
        ("template_id", pa.string()),
        ("input", pa.string()),
        ("outputs", pa.list_(pa.string())),
        ("candidates", pa.list_(pa.string())),
        ("split", pa.string()),
        ("level", pa.string()),
        ("example_id", pa.string()),
        ("language", pa.string()),
        ("source_index", pa.int64()),
    ]
)

# The columns holding one value per task, which the build repeats on each of the task's rows: a reader
# may take them from any one row.
TASK_LEVEL_COLUMNS = ("task_id", "benchmark", "data_source", "category", "instruction_type", "definition",
                      "positive_examples", "negative_examples", "level", "language")

MANIFEST_SCHEMA = pa.schema(
    [
        ("task_id", pa.string()),
        ("benchmark", pa.string()),
        ("category", pa.string()),
        ("split", pa.string()),
        ("level", pa.string()),
        ("n_examples", pa.int64()),
        ("n_train", pa.int64()),
        ("n_validation", pa.int64()),
        ("n_test", pa.int64()),
        ("data_source", pa.string()),
        ("instruction_type", pa.string()),
        ("language", pa.string()),
    ]
)

# A task drawn from several sources stores them joined with this separator in `data_source`.
DATA_SOURCE_SEPARATOR = ";"


def data_sources(value: str) -> set[str]:
    """The individual sources named in a `data_source` value."""
    return {part.strip().lower() for part in value.split(DATA_SOURCE_SEPARATOR) if part.strip()}
