"""Fixtures of the corpus tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from corpus_files import SAMPLE_TEST_TASKS, SAMPLE_TRAIN_TASKS, write_superni_dir


@pytest.fixture
def small_superni(tmp_path, superni_dir) -> Path:
    return write_superni_dir(tmp_path / "superni", superni_dir, SAMPLE_TRAIN_TASKS, SAMPLE_TEST_TASKS)
