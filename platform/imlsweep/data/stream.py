"""The training stream without Ray: which example lands at which stream position, rendered.

`source_items` turns a plan into one work item per source (the pool positions it draws and the stream
positions they land on); `render_source` renders one item's draws. The Ray pipeline runs
`render_source` in parallel per source; `preview_stream` renders the first N positions directly.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from imlsweep.data.encodings import Prompt, counted_parts
from imlsweep.data.mixture import MixtureConfig
from imlsweep.data.plan import TEXT_BENCHMARK, MixturePlan, SourcePlan
from imlsweep.data.sampling import draw_positions, sample_positions
from imlsweep.data.tokenization import PromptTokenizer
from imlsweep.errors import UserError


@lru_cache(maxsize=4)
def open_corpus(corpus_dir: str) -> Any:
    from imlsweep.corpus.store import Corpus

    return Corpus.open(corpus_dir)


def is_text_addon(source: SourcePlan) -> bool:
    return source.addon is not None and source.benchmark == TEXT_BENCHMARK


def source_items(plan: MixturePlan, mixture: MixtureConfig) -> list[dict[str, Any]]:
    """One work item per source with examples: which pool positions it draws, and where each lands."""
    stream = plan.stream_sources()
    by_source = np.argsort(stream, kind="stable")
    bounds = np.cumsum([0] + [s.expected_examples for s in plan.sources])
    items = []
    for index, source in enumerate(plan.sources):
        if source.expected_examples == 0:
            continue
        samples = "all" if is_text_addon(source) else mixture.samples_per_task
        # a source drawn less than its sample's size draws a prefix of it; more, the whole sample again
        first = source.expected_examples if source.expected_examples < source.sampled else None
        sampled = sample_positions(source.pool_size, samples, mixture.sample_seed, source.source_id, first)
        positions = draw_positions(sampled, source.expected_examples, mixture.seed, source.source_id)
        items.append({"source": index, "positions": np.asarray(positions, dtype=np.int64),
                      "orders": by_source[bounds[index]:bounds[index + 1]].astype(np.int64)})
    return items


def render_source(source: SourcePlan, positions: np.ndarray, mixture: MixtureConfig, corpus_dir: str,
                  encoder: PromptTokenizer | None) -> list[tuple[str, Prompt]]:
    """(example_id, prompt) of each draw of one source: a corpus task, or documents of a text add-on.
    `encoder` counts tokens for the source-length rule of superni_def_pos (None: no limit)."""
    from imlsweep.data.texts import read_text_documents

    if is_text_addon(source):
        addon = next(a for a in mixture.addons if a.name == source.addon)
        documents = read_text_documents(addon.texts)
        return [(f"{source.source_id}:{p}", Prompt(shared="", own="", target=documents[p])) for p in positions]
    distinct = sorted(set(int(p) for p in positions))
    rendered = {p: (row["example_id"], prompt)
                for p, (row, prompt) in zip(distinct, render_task_rows(source, distinct, mixture, corpus_dir, encoder))}
    return [rendered[int(p)] for p in positions]


def render_task_rows(source: SourcePlan, distinct: list[int], mixture: MixtureConfig, corpus_dir: str,
                     encoder: PromptTokenizer | None) -> list[tuple[dict[str, Any], Prompt]]:
    """(row, prompt) of a corpus task's pool positions `distinct` (ascending, no repeats)."""
    from imlsweep.data.render import TaskPrompter, split_positions, task_rows

    table = open_corpus(corpus_dir).read_task(source.source_id)
    pool = split_positions(table, mixture.train_split)
    if len(pool) != source.pool_size:
        raise UserError(f"task {source.source_id}: the manifest says {source.pool_size} {mixture.train_split} rows, "
                        f"the task file has {len(pool)}: rebuild the corpus")
    rows = task_rows(table, pool[distinct])
    demo_pool = pool if mixture.train_split == "train" else split_positions(table, "train")
    count_tokens = None
    if encoder is not None:
        encoder.remember_segments([text for row in rows for text in counted_parts(row, mixture.encoding)])
        count_tokens = encoder.count_tokens
    prompter = TaskPrompter(source.source_id, table, demo_pool, mixture.encoding, mixture.demonstrations, mixture.seed,
                            count_tokens, mixture.max_source_length)
    in_pool = mixture.train_split == "train"  # a demonstration is never the example itself
    return [(row, prompter.prompt(row, p if in_pool else None)) for p, row in zip(distinct, rows)]


def preview_stream(plan: MixturePlan, mixture: MixtureConfig, corpus_dir: str, count: int,
                   encoder: PromptTokenizer | None) -> list[dict[str, Any]]:
    """The first `count` examples of the stream, rendered exactly as the pipeline renders them."""
    found = []
    for item in source_items(plan, mixture):
        keep = item["orders"] < count
        if keep.any():
            source = plan.sources[item["source"]]
            for order, (example_id, prompt) in zip(item["orders"][keep], render_source(
                    source, item["positions"][keep], mixture, corpus_dir, encoder)):
                found.append({"position": int(order), "task_id": source.source_id, "example_id": example_id,
                              "benchmark": source.benchmark, "encoding": mixture.encoding.name,
                              "loss": source.loss, "source": prompt.source, "target": prompt.target})
    return sorted(found, key=lambda e: e["position"])
