"""The leakage check: for every (training task, eval task) pair, the fraction of the eval task's
examples whose sequence shares any word 13-gram with the training task's sequences.

Every sequence becomes a set of hashed n-grams. The eval side (a few hundred thousand examples at
most) becomes one sorted hash index in the object store; Ray Data streams the training rows (millions)
through workers that look their n-grams up in it with a binary search. The work grows with the number
of n-grams, never with pairs of examples or tasks.
A sequence is an example's input and its outputs: a task-level definition is the same text on every
example, so it would make every pair of similar instructions look leaked.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from imlsweep.corpus.schema import data_sources
from imlsweep.corpus.store import Corpus

NGRAM = 13
DEFAULT_THRESHOLD = 0.01
WORD = re.compile(r"\w+")
# Odd 64-bit multiplier of the polynomial n-gram hash (arithmetic wraps modulo 2**64).
HASH_BASE = np.uint64(0x100000001B3)


def sequence_text(input_text: str, outputs) -> str:
    return " ".join([input_text, *(list(outputs) if outputs is not None else [])])


def ngram_hashes(text: str, n: int = NGRAM) -> np.ndarray:
    """Distinct 64-bit hashes of the lower-cased word n-grams of `text` (stable across processes)."""
    words = WORD.findall(text.lower())
    if len(words) < n:
        return np.empty(0, dtype=np.uint64)
    word_hashes = np.array([zlib.crc32(word.encode("utf-8")) for word in words], dtype=np.uint64)
    hashes = np.zeros(len(words) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(n):
            hashes = hashes * HASH_BASE + word_hashes[offset:offset + len(hashes)]
    return np.unique(hashes)


def batch_ngrams(batch: pd.DataFrame, keep_example: bool, n: int) -> pd.DataFrame:
    """One row per (n-gram, task[, example]) of a batch of corpus rows, without duplicates."""
    hashes = [ngram_hashes(sequence_text(text, outputs), n) for text, outputs in zip(batch["input"], batch["outputs"])]
    counts = [len(row_hashes) for row_hashes in hashes]
    frame = pd.DataFrame({
        "ngram": np.concatenate(hashes).astype(np.int64) if hashes else np.empty(0, dtype=np.int64),
        "task_id": np.repeat(batch["task_id"].to_numpy(dtype=object), counts),
    })
    if keep_example:
        frame["example_id"] = np.repeat(batch["example_id"].to_numpy(dtype=object), counts)
    return frame.drop_duplicates(ignore_index=True)


def flagged_pairs(matches: pd.DataFrame, eval_examples: dict[str, int], threshold: float) -> pd.DataFrame:
    """From (train_task, eval_task, example_id) matches: pairs whose leaked fraction exceeds `threshold`."""
    columns = ["train_task", "eval_task", "overlapping_examples", "eval_examples", "fraction"]
    if matches.empty:
        return pd.DataFrame(columns=columns)
    counts = (matches.drop_duplicates().groupby(["train_task", "eval_task"]).size()
              .rename("overlapping_examples").reset_index())
    counts["eval_examples"] = counts["eval_task"].map(eval_examples).astype("int64")
    counts["fraction"] = counts["overlapping_examples"] / counts["eval_examples"]
    flagged = counts[counts["fraction"] > threshold]
    return flagged.sort_values(["fraction", "train_task", "eval_task"], ascending=[False, True, True])[columns] \
        .reset_index(drop=True)


def shared_source_pairs(manifest: pd.DataFrame) -> list[dict]:
    """(training task, eval task) pairs with a data source in common: never allowed."""
    train = manifest[manifest["split"] == "train"]
    evals = manifest[manifest["split"] != "train"]
    by_source: dict[str, list[str]] = {}
    for task_id, value in zip(evals["task_id"], evals["data_source"]):
        for name in data_sources(value):
            by_source.setdefault(name, []).append(task_id)
    pairs = []
    for task_id, value in zip(train["task_id"], train["data_source"]):
        for name in sorted(data_sources(value)):
            pairs.extend({"train_task": task_id, "eval_task": other, "data_source": name}
                         for other in by_source.get(name, []))
    return pairs


@dataclass
class LeakageReport:
    threshold: float
    ngram: int
    train_tasks: int
    eval_tasks: int
    pairs_checked: int
    flagged: list[dict] = field(default_factory=list)
    shared_data_source: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class EvalIndex:
    """Eval n-grams sorted by hash; `example` indexes `example_ids` / `example_tasks`."""

    hashes: np.ndarray
    example: np.ndarray
    example_ids: list[str]
    example_tasks: list[str]


def build_eval_index(ngrams: pd.DataFrame) -> EvalIndex:
    # Groups numbered in order of first appearance, the order drop_duplicates keeps.
    keys = ngrams[["eval_task", "example_id"]].drop_duplicates().reset_index(drop=True)
    example = ngrams.groupby(["eval_task", "example_id"], sort=False).ngroup().to_numpy(dtype=np.int64)
    order = np.argsort(ngrams["ngram"].to_numpy(), kind="stable")
    return EvalIndex(ngrams["ngram"].to_numpy()[order], example[order], keys["example_id"].tolist(),
                     keys["eval_task"].tolist())


def lookup_matches(train_ngrams: pd.DataFrame, index: EvalIndex) -> pd.DataFrame:
    """(train_task, eval_task, example_id) for every eval example sharing an n-gram with a train task."""
    hashes = train_ngrams["ngram"].to_numpy()
    left = np.searchsorted(index.hashes, hashes, side="left")
    right = np.searchsorted(index.hashes, hashes, side="right")
    hits = right > left
    if not hits.any():
        return pd.DataFrame({"train_task": [], "eval_task": [], "example_id": []}, dtype="object")
    left, right = left[hits], right[hits]
    lengths = right - left
    # Expand each [left, right) range of matching eval n-grams into positions.
    starts = np.repeat(left - np.cumsum(lengths) + lengths, lengths)
    positions = starts + np.arange(lengths.sum())
    examples = index.example[positions]
    tasks = np.repeat(train_ngrams["train_task"].to_numpy()[hits], lengths)
    frame = pd.DataFrame({"train_task": tasks, "example": examples}).drop_duplicates()
    return pd.DataFrame({
        "train_task": frame["train_task"].to_numpy(),
        "eval_task": [index.example_tasks[i] for i in frame["example"]],
        "example_id": [index.example_ids[i] for i in frame["example"]],
    })


_INDEX_CACHE: dict[str, EvalIndex] = {}


def match_batch(batch: pd.DataFrame, index_ref, n: int) -> pd.DataFrame:
    """Ray Data UDF: a batch of training rows -> their matches against the shared eval index."""
    import ray

    key = index_ref.hex()
    if key not in _INDEX_CACHE:
        _INDEX_CACHE.clear()
        _INDEX_CACHE[key] = ray.get(index_ref)
    ngrams = batch_ngrams(batch, keep_example=False, n=n).rename(columns={"task_id": "train_task"})
    return lookup_matches(ngrams, _INDEX_CACHE[key])


def find_leakage(corpus: Corpus, threshold: float = DEFAULT_THRESHOLD, n: int = NGRAM) -> LeakageReport:
    """Run the check with Ray Data (Ray must be initialised)."""
    import ray
    from ray.data.expressions import col
    columns = ["task_id", "example_id", "input", "outputs", "split"]
    manifest = corpus.manifest
    train_ids = manifest.loc[manifest["split"] == "train", "task_id"].tolist()
    eval_ids = manifest.loc[manifest["split"] != "train", "task_id"].tolist()
    report = LeakageReport(threshold, n, len(train_ids), len(eval_ids), len(train_ids) * len(eval_ids),
                           shared_data_source=shared_source_pairs(manifest))
    if not train_ids or not eval_ids:
        return report

    # The eval side is small by nature (validation and test instances): read it here, in one process.
    eval_rows = pa.concat_tables(
        [corpus.read_task(task_id, columns=columns).filter(pc.field("split") != "train") for task_id in eval_ids]
    ).to_pandas()
    eval_examples = eval_rows.groupby("task_id")["example_id"].nunique().to_dict()
    eval_ngrams = batch_ngrams(eval_rows, keep_example=True, n=n).rename(columns={"task_id": "eval_task"})
    index_ref = ray.put(build_eval_index(eval_ngrams))
    matches = (ray.data.read_parquet(corpus.task_paths(train_ids))
               .select_columns(columns)
               .filter(expr=col("split") == "train")
               .map_batches(match_batch, batch_format="pandas", fn_kwargs={"index_ref": index_ref, "n": n})
               .to_pandas())
    report.flagged = flagged_pairs(matches, eval_examples, threshold).to_dict(orient="records")
    return report
