"""Reading a built corpus: the manifest, the resolved config and the per-task Parquet files."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from imlsweep.corpus.config import CorpusConfig, load_corpus_config
from imlsweep.errors import UserError

MANIFEST_FILE = "manifest.parquet"
CONFIG_FILE = "corpus.yaml"
STATS_FILE = "stats.json"
INVALID_FILE = "invalid.jsonl"
DATA_DIR = "data"


def task_file(root: Path, benchmark: str, task_id: str) -> Path:
    return root / DATA_DIR / benchmark / f"{task_id}.parquet"


class Corpus:
    """A finished corpus directory (see `imlsweep corpus build`); tasks come in manifest order."""

    def __init__(self, directory: Path, manifest: pd.DataFrame):
        self.dir = directory
        self.manifest = manifest
        self._benchmark_of = dict(zip(manifest["task_id"], manifest["benchmark"]))

    @classmethod
    def open(cls, directory: str | Path) -> "Corpus":
        directory = Path(directory)
        if not (directory / MANIFEST_FILE).is_file() or not (directory / CONFIG_FILE).is_file():
            raise UserError(f"{directory}: not a built corpus (no {MANIFEST_FILE} and {CONFIG_FILE}); "
                            "build one with `imlsweep corpus build CONFIG --out DIR`")
        manifest = pq.read_table(directory / MANIFEST_FILE).to_pandas()
        return cls(directory, manifest.sort_values("task_id", kind="stable").reset_index(drop=True))

    @cached_property
    def config(self) -> CorpusConfig:
        return load_corpus_config(self.dir / CONFIG_FILE)

    def task_path(self, task_id: str) -> Path:
        if task_id not in self._benchmark_of:
            raise UserError(f"{self.dir}: no task {task_id!r} in this corpus")
        return task_file(self.dir, self._benchmark_of[task_id], task_id)

    def task_paths(self, task_ids: list[str]) -> list[str]:
        return [str(self.task_path(task_id)) for task_id in task_ids]

    def read_task(self, task_id: str, columns: list[str] | None = None) -> pa.Table:
        # ParquetFile.read, not read_table: a third of the time on the many small files of a corpus;
        # a task file is small, so reading it in one go on this thread beats buffering and thread hand-offs
        with pq.ParquetFile(self.task_path(task_id), pre_buffer=False) as task_file:
            return task_file.read(columns=columns, use_threads=False)

    def task_ids(self, split: str | None = None, benchmark: str | None = None,
                 category: str | None = None) -> list[str]:
        """Task ids in manifest order (sorted), filtered by manifest split, benchmark and category."""
        rows = self.manifest
        if split is not None:
            rows = rows[rows["split"] == split]
        if benchmark is not None:
            rows = rows[rows["benchmark"] == benchmark]
        if category is not None:
            rows = rows[rows["category"] == category]
        return rows["task_id"].tolist()
