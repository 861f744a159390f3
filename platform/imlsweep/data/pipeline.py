"""The training stream on Ray Data: corpus + mixture -> packed rows (decoder-only) or token pairs (seq2seq).

    plan (driver, manifest only) -> one item per source: its drawn pool positions and stream positions
    -> map_batches: read the task, render, tokenize (shared parts once per task)   [parallel per source]
    -> decoder-only: groupby(window of stream positions).map_groups(pack) -> sort
       seq2seq:      sort by stream position
    (a stream of one window skips the shuffles: one block, packed or sorted in place)

Every random choice comes from the mixture's seed, and packing works on fixed windows of stream
positions, so the rows and their order do not depend on how Ray splits the data into blocks.

Workers turn their shard into torch batches with `iter_train_batches`. Resuming mid-epoch: the order
is a function of the seed only, so a restarted worker passes `skip_batches=N` to skip the N batches
it has already trained on (the count it checkpointed).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from imlsweep.data.mixture import MixtureConfig
from imlsweep.data.packing import IGNORE_INDEX, PACKED_COLUMNS, example_tokens, pack_examples, truncate
from imlsweep.data.plan import MixturePlan, plan_mixture
from imlsweep.data.stream import open_corpus, render_source, source_items
from imlsweep.errors import UserError

if TYPE_CHECKING:
    import ray.data
    import torch

ModelKind = Literal["causal", "seq2seq"]
PACK_WINDOW = 8192  # stream positions packed together: enough for >0.99 packing efficiency
SEQ2SEQ_COLUMNS = ("input_ids", "labels")


def check_model_kind(model_kind: str) -> None:
    if model_kind not in ("causal", "seq2seq"):
        raise UserError(f"model kind {model_kind!r}: expected 'causal' or 'seq2seq'")


def tokenize_sources(batch: dict[str, np.ndarray], *, plan: MixturePlan, mixture: MixtureConfig, corpus_dir: str,
                     tokenizer_name: str, model_kind: ModelKind, window: int) -> pa.Table:
    """map_batches body: render and tokenize every draw of the sources in `batch`."""
    from imlsweep.data.tokenization import PromptTokenizer
    from imlsweep.data.tokenizer import cached_tokenizer

    tokenizer = cached_tokenizer(tokenizer_name)
    eos = tokenizer.eos_token_id
    out: dict[str, list] = {"order": [], "input_ids": [], "labels": []}
    for index, positions, orders in zip(batch["source"], batch["positions"], batch["orders"]):
        source = plan.sources[int(index)]
        encoder = PromptTokenizer(tokenizer)  # one per task: its count cache holds that task's texts
        rendered = render_source(source, positions, mixture, corpus_dir, encoder)
        sources, targets = encoder.encode([prompt for _, prompt in rendered])
        for order, source_ids, target_ids in zip(orders, sources, targets):
            if model_kind == "causal":
                ids, labels = example_tokens(source_ids, target_ids, eos, loss_on_source=source.loss == "sequence")
                ids, labels = truncate(ids, labels, mixture.max_length, mixture.truncation_side)
            else:  # Tk-Instruct keeps the first tokens of an over-long source
                ids = [*source_ids[: mixture.max_source_length - 1], eos]
                labels = [*target_ids[: mixture.max_target_length - 1], eos]
            out["order"].append(int(order))
            out["input_ids"].append(ids)
            out["labels"].append(labels)
    order = np.asarray(out["order"], dtype=np.int64)
    # Arrow lists, not numpy tensors: equal lengths in one block must not change the column type
    return pa.table({"order": order, "window": order // window,
                     "input_ids": pa.array(out["input_ids"], type=pa.list_(pa.int64())),
                     "labels": pa.array(out["labels"], type=pa.list_(pa.int64()))})


def pack_window(batch: dict[str, np.ndarray], *, max_len: int, pad_id: int, window: int) -> dict[str, np.ndarray]:
    """map_groups body: the examples of one window, in stream order, packed into rows."""
    order = np.argsort(batch["order"], kind="stable")
    examples = [(batch["input_ids"][i], batch["labels"][i]) for i in order]
    packed = pack_examples(examples, max_len, pad_id)
    rows = packed["input_ids"].shape[0]
    packed["packed_index"] = int(batch["window"][0]) * window + np.arange(rows, dtype=np.int64)
    return packed


def build_train_dataset(mixture: MixtureConfig, corpus_dir: str, tokenizer_name: str, model_kind: ModelKind, *,
                        plan: MixturePlan | None = None, num_blocks: int | None = None,
                        window: int = PACK_WINDOW) -> ray.data.Dataset:
    """The trial's training stream as a Ray Dataset (needs a running Ray). `num_blocks` only changes how
    the work is split (default: one block per source, at most 64), never the rows or their order.
    `window`: stream positions packed together (larger packs tighter and holds more in memory).

    causal: rows of int64 arrays [max_length]: input_ids, labels, position_ids, document_ids (+ packed_index).
    seq2seq: rows of variable-length int64 input_ids and labels (+ order), in stream order."""
    import ray.data

    check_model_kind(model_kind)
    corpus_dir = str(corpus_dir)
    if plan is None:
        plan = plan_mixture(mixture, open_corpus(corpus_dir).manifest)
    from imlsweep.data.tokenizer import cached_tokenizer

    pad_id = cached_tokenizer(tokenizer_name).pad_token_id  # fails early, on the driver, for a bad name
    items = source_items(plan, mixture)
    dataset = ray.data.from_items(items, override_num_blocks=num_blocks or min(len(items), 64))
    tokenized = dataset.map_batches(
        tokenize_sources, batch_size=1, batch_format="numpy",
        fn_kwargs={"plan": plan, "mixture": mixture, "corpus_dir": corpus_dir, "tokenizer_name": tokenizer_name,
                   "model_kind": model_kind, "window": window})
    windows = -(-plan.total_examples // window)
    if windows == 1:  # a small stream (e.g. one single-task trial): one block, no shuffle stage needed
        tokenized = tokenized.repartition(1)
    if model_kind == "seq2seq":
        ordered = (tokenized.map_batches(sorted_by_order, batch_size=None, batch_format="pyarrow") if windows == 1
                   else tokenized.sort("order"))
        return ordered.select_columns(["order", *SEQ2SEQ_COLUMNS])
    pack_kwargs = {"max_len": mixture.max_length, "pad_id": pad_id, "window": window}
    if windows == 1:
        return tokenized.map_batches(pack_window, batch_size=None, batch_format="numpy", fn_kwargs=pack_kwargs)
    packed = tokenized.groupby("window", num_partitions=min(windows, 32)).map_groups(
        pack_window, batch_format="numpy", fn_kwargs=pack_kwargs)
    return packed.sort("packed_index")


def sorted_by_order(table: pa.Table) -> pa.Table:
    return table.sort_by("order")


def train_data_config() -> Any:
    """The `DataConfig` for `TorchTrainer(dataset_config=...)`: keeps the dataset's order on the way to
    the workers (Ray Train still splits rows equally: `streaming_split(equal=True)`)."""
    import ray.train
    from ray.data import ExecutionOptions

    return ray.train.DataConfig(execution_options=ExecutionOptions(preserve_order=True))


def iter_train_batches(shard: Any, batch_size: int, model_kind: ModelKind, *, pad_token_id: int = 0,
                       skip_batches: int = 0, seed: int = 0, group_batches: int = 32) -> Iterator[dict[str, torch.Tensor]]:
    """Torch batches from a worker's shard (`ray.train.get_dataset_shard("train")`) or any Dataset.

    The last batch of a pass may be partial (no example is dropped); workers with equal row counts
    (Ray Train splits equally) still get equal batch counts. seq2seq: within each group of `group_batches` batches, rows are sorted by
    length (length-grouped), the batch order is shuffled with the seed, and each batch is padded to its
    longest row. `skip_batches` skips that many batches from the start (to resume mid-epoch)."""
    check_model_kind(model_kind)
    batches = (packed_batches(shard, batch_size) if model_kind == "causal"
               else length_grouped_batches(shard, batch_size, pad_token_id, seed, group_batches))
    for number, batch in enumerate(batches):
        if number >= skip_batches:
            yield batch


def packed_batches(shard: Any, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    import torch

    for batch in shard.iter_batches(batch_size=batch_size, batch_format="numpy"):
        yield {column: torch.as_tensor(np.stack(batch[column]), dtype=torch.int64) for column in PACKED_COLUMNS}


def length_grouped_batches(shard: Any, batch_size: int, pad_token_id: int, seed: int,
                           group_batches: int) -> Iterator[dict[str, torch.Tensor]]:
    from imlsweep.data.seeding import keyed_rng

    carry: list[tuple[np.ndarray, np.ndarray]] = []
    for group_number, chunk in enumerate(shard.iter_batches(batch_size=batch_size * group_batches,
                                                           batch_format="numpy")):
        rows = carry + list(zip(chunk["input_ids"], chunk["labels"]))
        full = len(rows) // batch_size * batch_size
        rows, carry = rows[:full], rows[full:]
        by_length = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        groups = [by_length[i:i + batch_size] for i in range(0, len(rows), batch_size)]
        keyed_rng(seed, "length_groups", group_number).shuffle(groups)
        for members in groups:
            yield padded_pair_batch([rows[i] for i in members], pad_token_id)
    if carry:
        yield padded_pair_batch(carry, pad_token_id)


def padded_pair_batch(rows: list[tuple[np.ndarray, np.ndarray]], pad_token_id: int) -> dict[str, torch.Tensor]:
    import torch

    source_len = max(len(ids) for ids, _ in rows)
    target_len = max(len(labels) for _, labels in rows)
    input_ids = torch.full((len(rows), source_len), pad_token_id, dtype=torch.int64)
    attention_mask = torch.zeros((len(rows), source_len), dtype=torch.int64)
    labels = torch.full((len(rows), target_len), IGNORE_INDEX, dtype=torch.int64)
    for i, (ids, target) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.from_numpy(np.array(ids, dtype=np.int64))
        attention_mask[i, : len(ids)] = 1
        labels[i, : len(target)] = torch.from_numpy(np.array(target, dtype=np.int64))
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
