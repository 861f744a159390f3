"""Benchmark adapters: each reads one source format into `SourceTask`s (or `InvalidTask`s)."""

from __future__ import annotations

from collections.abc import Iterator

from imlsweep.corpus.config import HFSource, RecordsSource, SuperNISource
from imlsweep.corpus.task import InvalidTask, SkippedTask, SourceTask

SourceItem = SourceTask | InvalidTask | SkippedTask


def read_source(source: SuperNISource | RecordsSource | HFSource, *, use_source_splits: bool = True
                ) -> Iterator[SourceItem]:
    """The tasks of one configured source, in a fixed order (file names, then first appearance)."""
    if isinstance(source, SuperNISource):
        from imlsweep.corpus.adapters.superni import read_superni

        return read_superni(source, use_source_splits)
    if isinstance(source, RecordsSource):
        from imlsweep.corpus.adapters.records import read_records

        return read_records(source)
    from imlsweep.corpus.adapters.hf import read_hf

    return read_hf(source)
