"""Fixtures of the data tests: rows straight from the raw SuperNI JSON."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="session")
def superni_row(superni_dir):
    """`superni_row(task_file, index=0)`: an instance of a raw SuperNI task as a corpus row."""

    def make(task_file: str, index: int = 0, instruction_type: str = "task") -> dict:
        task = json.loads((superni_dir / "tasks" / f"{task_file}.json").read_text(encoding="utf-8"))
        instance = task["Instances"][index]
        return {
            "task_id": task_file, "example_id": instance["id"], "benchmark": "superni",
            "instruction_type": instruction_type, "definition": task["Definition"][0],
            "positive_examples": task["Positive Examples"], "negative_examples": task["Negative Examples"],
            "input": instance["input"], "outputs": instance["output"], "candidates": None,
        }

    return make
