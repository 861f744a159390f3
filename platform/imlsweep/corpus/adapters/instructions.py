"""The hand-written instruction of each keyword-style task (CrossFit, ExMix, T5, UnifiedSKG): OPT-IML
gives every such task one instruction, kept in a YAML file that maps task id -> instruction text."""

from __future__ import annotations

from imlsweep.config import read_yaml
from imlsweep.corpus.task import InvalidTask
from imlsweep.errors import UserError


def read_instructions(path: str) -> dict[str, str]:
    data = read_yaml(path)
    if not isinstance(data, dict) or not all(isinstance(value, str) for value in data.values()):
        raise UserError(f"{path}: expected a mapping of task id -> instruction text")
    return {str(key): value for key, value in data.items()}


def missing_instruction(path: str, task_id: str) -> InvalidTask:
    return InvalidTask(path, task_id, "instruction", "missing from the instructions file")
