"""The training stream on Ray Data: corpus + mixture -> packed rows (decoder-only) or token pairs (seq2seq).

    plan (driver, manifest only) -> one item per source: its drawn pool positions and stream positions
    -> map_batches: read the task, render, tokenize (shared parts once per task)   [parallel per source]
    -> decoder-only: groupby(window of stream positions, sort-based).map_groups(pack rows)
       seq2seq:      sort by stream position
    (a stream of one window skips the shuffles: one block, packed or sorted in place)

Every random choice comes from the mixture's seed, and packing works on fixed windows of stream
positions, so the rows and their order do not depend on how Ray splits the data into blocks. Examples
travel as int32 token lists with a loss start, packed rows as int32 ids plus document lengths (8 KB a
row at 2048): the shuffles move 4x and 8x fewer bytes than int64 ids and labels would. Workers expand
their batches.

Workers turn their shard into torch batches with `iter_train_batches`. Resuming mid-epoch: the order
is a function of the seed only, so a restarted worker passes `skip_batches=N` to skip the N batches
it has already trained on (the count it checkpointed).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from imlsweep.data.mixture import MixtureConfig
from imlsweep.data.packing import IGNORE_INDEX, TokenizedExamples, causal_examples, pack_rows, unpack_rows
from imlsweep.data.plan import MixturePlan, SourcePlan, plan_mixture
from imlsweep.data.stream import is_text_addon, open_corpus, render_source, source_items
from imlsweep.data.token_cache import cache_location, cached_task_tokens
from imlsweep.errors import UserError

if TYPE_CHECKING:
    import ray.data
    import torch

ModelKind = Literal["causal", "seq2seq"]
PACK_WINDOW = 8192  # stream positions packed together (slots filled: 0.998 at 2048, 0.999 at 8192)
BLOCKS_PER_CPU = 4  # tokenizing tasks per CPU: enough to balance, few enough for cheap sort shuffles
SEQ2SEQ_COLUMNS = ("input_ids", "labels")


def check_model_kind(model_kind: str) -> None:
    if model_kind not in ("causal", "seq2seq"):
        raise UserError(f"model kind {model_kind!r}: expected 'causal' or 'seq2seq'")


def tokenize_sources(batch: dict[str, np.ndarray], *, plan: MixturePlan, mixture: MixtureConfig, corpus_dir: str,
                     tokenizer_name: str, model_kind: ModelKind, window: int, cache: str) -> pa.Table:
    """map_batches body: the tokens of every draw of the sources in `batch` (a corpus task's through the
    token cache at `cache`)."""
    from imlsweep.data.tokenizer import cached_tokenizer

    eos = cached_tokenizer(tokenizer_name).eos_token_id
    tables = []
    for index, positions, orders in zip(batch["source"], batch["positions"], batch["orders"]):
        source = plan.sources[int(index)]
        if is_text_addon(source):
            sources, targets = text_tokens(source, positions, mixture, tokenizer_name)
        else:
            sources, targets = cached_task_tokens(source, positions, mixture, corpus_dir, tokenizer_name, cache)
        columns = (causal_columns(sources, targets, eos, mixture, source.loss == "sequence")
                   if model_kind == "causal" else seq2seq_columns(sources, targets, eos, mixture))
        orders = np.asarray(orders, dtype=np.int64)
        tables.append(pa.table({"order": orders, "window": orders // window, **columns}))
    return pa.concat_tables(tables)


def text_tokens(source: SourcePlan, positions: np.ndarray, mixture: MixtureConfig,
                tokenizer_name: str) -> tuple[list[list[int]], list[list[int]]]:
    """A plain-text add-on's draws: the documents, tokenized (they are not cached: no rendering)."""
    from imlsweep.data.tokenization import PromptTokenizer
    from imlsweep.data.tokenizer import cached_tokenizer

    rendered = render_source(source, positions, mixture, "", None)
    return PromptTokenizer(cached_tokenizer(tokenizer_name)).encode([prompt for _, prompt in rendered])


def causal_columns(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], eos: int, mixture: MixtureConfig,
                   loss_on_source: bool) -> dict[str, pa.Array]:
    examples = causal_examples(sources, targets, eos, mixture.max_length, mixture.truncation_side, loss_on_source)
    return {"input_ids": pa.LargeListArray.from_arrays(examples.offsets, examples.values),
            "loss_start": pa.array(examples.loss_starts)}


def seq2seq_columns(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], eos: int,
                    mixture: MixtureConfig) -> dict[str, pa.Array]:
    """Tk-Instruct keeps the first tokens of an over-long source (and target)."""
    # Arrow lists, not numpy tensors: equal lengths in one block must not change the column type
    return {"input_ids": pa.array([np.append(ids[: mixture.max_source_length - 1], eos) for ids in sources],
                                  type=pa.list_(pa.int64())),
            "labels": pa.array([np.append(ids[: mixture.max_target_length - 1], eos) for ids in targets],
                               type=pa.list_(pa.int64()))}


def pack_window(table: pa.Table, *, max_len: int, pad_id: int, window: int, seed: int) -> pa.Table:
    """map_groups body: the examples of one window, in stream order, packed into compact rows (shuffled
    with the seed and the window's number)."""
    from ray.data.extensions import ArrowTensorArray

    from imlsweep.data.seeding import keyed_np_rng

    table = table.sort_by("order")
    ids = table.column("input_ids").combine_chunks()
    offsets = ids.offsets.to_numpy()
    examples = TokenizedExamples(values=ids.flatten().to_numpy(), offsets=offsets - offsets[0],
                                 loss_starts=table.column("loss_start").to_numpy())
    number = int(table.column("window")[0].as_py())
    rows = pack_rows(examples, max_len, pad_id, keyed_np_rng(seed, "packed_rows", number))
    return pa.table({
        "input_ids": ArrowTensorArray.from_numpy(rows["input_ids"]),
        "document_lengths": pa.array(rows["document_lengths"], type=pa.list_(pa.int32())),
        "loss_starts": pa.array(rows["loss_starts"], type=pa.list_(pa.int32())),
        "packed_index": number * window + np.arange(len(rows["input_ids"]), dtype=np.int64)})


def balanced_order(items: list[dict[str, Any]], blocks: int) -> list[dict[str, Any]]:
    """Work items dealt largest first, round robin, into `blocks` equal runs: every block gets a like
    share of the work, so the tokenizing stage does not wait on one heavy block. (The stream does not
    depend on this order: rows are placed by their stream positions.)"""
    by_size = sorted(range(len(items)), key=lambda i: (-len(items[i]["positions"]), i))
    return [items[i] for block in range(blocks) for i in by_size[block::blocks]]


def build_train_dataset(mixture: MixtureConfig, corpus_dir: str, tokenizer_name: str, model_kind: ModelKind, *,
                        plan: MixturePlan | None = None, num_blocks: int | None = None,
                        window: int = PACK_WINDOW, token_cache: str | None = None) -> ray.data.Dataset:
    """The trial's training stream as a Ray Dataset (needs a running Ray). `num_blocks` only changes how
    the work is split (default: BLOCKS_PER_CPU per CPU of the cluster), never the rows or their order.
    `window`: stream positions packed together (larger packs tighter and holds more in memory).
    `token_cache`: where tokenized tasks are cached (default: beside the corpus).

    causal: compact packed rows in order (int32 input_ids [max_length], document_lengths, loss_starts,
    packed_index); `iter_train_batches` expands them into int64 PACKED_COLUMNS.
    seq2seq: rows of variable-length int64 input_ids and labels (+ order), in stream order."""
    import ray.data
    from ray.data.context import ShuffleStrategy

    check_model_kind(model_kind)
    corpus_dir = str(corpus_dir)
    if plan is None:
        plan = plan_mixture(mixture, open_corpus(corpus_dir).manifest)
    from imlsweep.data.tokenizer import cached_tokenizer

    pad_id = cached_tokenizer(tokenizer_name).pad_token_id  # fails early, on the driver, for a bad name
    items = source_items(plan, mixture)
    blocks = num_blocks or min(len(items), BLOCKS_PER_CPU * max(1, int(ray.cluster_resources().get("CPU", 1))))
    dataset = ray.data.from_items(balanced_order(items, blocks), override_num_blocks=blocks)
    # For this dataset only: task-based sort shuffles (hash shuffles hold CPUs for aggregator actors),
    # and no CPUs held back for the operators after the tokenizing one, which all wait for it anyway.
    dataset.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    dataset.context.op_resource_reservation_enabled = False
    dataset.context.execution_options.preserve_order = True
    tokenized = dataset.map_batches(
        tokenize_sources, batch_size=1, batch_format="numpy",
        fn_kwargs={"plan": plan, "mixture": mixture, "corpus_dir": corpus_dir, "tokenizer_name": tokenizer_name,
                   "model_kind": model_kind, "window": window,
                   "cache": cache_location(token_cache, corpus_dir)})
    windows = -(-plan.total_examples // window)
    if windows == 1:  # a small stream (e.g. one single-task trial): one block, no shuffle stage needed
        tokenized = tokenized.repartition(1)
    if model_kind == "seq2seq":
        ordered = (tokenized.map_batches(sorted_by_order, batch_size=None, batch_format="pyarrow") if windows == 1
                   else tokenized.sort("order"))
        return ordered.select_columns(["order", *SEQ2SEQ_COLUMNS])
    pack_kwargs = {"max_len": mixture.max_length, "pad_id": pad_id, "window": window, "seed": mixture.seed}
    if windows == 1:
        return tokenized.map_batches(pack_window, batch_size=None, batch_format="pyarrow", fn_kwargs=pack_kwargs)
    # the sort-based groupby emits windows in order, and preserve_order keeps them so: no final sort
    return tokenized.groupby("window").map_groups(pack_window, batch_format="pyarrow", fn_kwargs=pack_kwargs)


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
        yield {column: torch.from_numpy(array) for column, array in unpack_rows(batch).items()}


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
