"""Benchmark adapters: each reads one published source format into `SourceTask`s (or `InvalidTask`s,
or `SkippedTask`s for tasks the source itself leaves out). One module per format:

superni (the natural-instructions repository), records (`jsonl` / `parquet` field-based exports),
hf (`datasets.load_dataset`), promptsource (templates.yaml applied to local datasets), p3 (P3 as
published), flan (Flan Collection exports), crossfit (CrossFit's TSV layout), unifiedskg (UnifiedSKG's
structured-knowledge examples) and reasoning (chain-of-thought datasets).
"""

from __future__ import annotations

from collections.abc import Iterator

from imlsweep.corpus.config import (
    CrossFitSource, FlanSource, HFSource, P3Source, PromptSourceSource, ReasoningSource, RecordsSource, Source,
    SuperNISource, UnifiedSKGSource,
)
from imlsweep.corpus.task import InvalidTask, SkippedTask, SourceTask

SourceItem = SourceTask | InvalidTask | SkippedTask


def read_source(source: Source, *, use_source_splits: bool = True, seed: int = 0) -> Iterator[SourceItem]:
    """The tasks of one configured source, in a fixed order (file names, then first appearance, or the
    order the config lists them). `seed` feeds the random choices a format makes (promptsource's
    `choice` filter)."""
    if isinstance(source, SuperNISource):
        from imlsweep.corpus.adapters.superni import read_superni

        return read_superni(source, use_source_splits)
    if isinstance(source, RecordsSource):
        from imlsweep.corpus.adapters.records import read_records

        return read_records(source)
    if isinstance(source, HFSource):
        from imlsweep.corpus.adapters.hf import read_hf

        return read_hf(source)
    if isinstance(source, PromptSourceSource):
        from imlsweep.corpus.adapters.promptsource import read_promptsource

        return read_promptsource(source, seed)
    if isinstance(source, P3Source):
        from imlsweep.corpus.adapters.p3 import read_p3

        return read_p3(source)
    if isinstance(source, FlanSource):
        from imlsweep.corpus.adapters.flan import read_flan

        return read_flan(source)
    if isinstance(source, CrossFitSource):
        from imlsweep.corpus.adapters.crossfit import read_crossfit

        return read_crossfit(source)
    if isinstance(source, UnifiedSKGSource):
        from imlsweep.corpus.adapters.unifiedskg import read_unifiedskg

        return read_unifiedskg(source)
    if isinstance(source, ReasoningSource):
        from imlsweep.corpus.adapters.reasoning import read_reasoning

        return read_reasoning(source)
    raise TypeError(f"no adapter for {type(source).__name__}")
