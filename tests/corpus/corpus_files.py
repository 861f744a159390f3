"""Small SuperNI-layout folders for corpus tests: copies of real sample tasks, plus files a test writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

SAMPLE_TRAIN_TASKS = ["task1331_reverse_array", "task363_sst2_polarity_classification"]
SAMPLE_TEST_TASKS = ["task1344_glue_entailment_classification"]


def write_superni_dir(root: Path, sample_dir: Path, train: list[str], test: list[str]) -> Path:
    """A folder in the natural-instructions layout holding copies of the named sample tasks."""
    (root / "tasks").mkdir(parents=True)
    (root / "splits" / "default").mkdir(parents=True)
    for task_id in train + test:
        shutil.copy(sample_dir / "tasks" / f"{task_id}.json", root / "tasks")
    (root / "splits" / "default" / "train_tasks.txt").write_text("\n".join(train) + "\n")
    (root / "splits" / "default" / "test_tasks.txt").write_text("\n".join(test) + "\n")
    (root / "splits" / "default" / "excluded_tasks.txt").write_text("")
    return root


def superni_task(n_instances: int = 3, category: str = "Sentiment Analysis", source: str = "made_up") -> dict:
    return {
        "Source": [source],
        "Categories": [category],
        "Definition": ["Say whether the review is positive."],
        "Input_language": ["English"],
        "Output_language": ["English"],
        "Instruction_language": ["English"],
        "Positive Examples": [{"input": "great", "output": "positive", "explanation": "praise"}],
        "Negative Examples": [],
        "Instances": [
            {"id": f"made-{index}", "input": f"review number {index}", "output": ["positive", "good"]}
            for index in range(n_instances)
        ],
    }


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path
