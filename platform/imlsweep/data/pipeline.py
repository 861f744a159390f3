"""The training stream on Ray Data: corpus + mixture -> packed rows (decoder-only), packed pairs of rows
(seq2seq with `pack_seq2seq`) or token pairs (seq2seq).

    plan (driver, manifest only) -> the stream cut into packing windows of stream positions (two
    small ones first, then equal ones of at most PACK_WINDOW) and into segments (each small window
    alone, so that the first rows leave early; then SEGMENT_WINDOWS windows each); one work item per
    segment: each source's drawn pool positions landing in it, and its partner segment's
    -> map_batches, one segment per task: its tasks' tokens from the token cache (the positions it
       lacks read, rendered, tokenized and added to the cache with the partner's, shared parts once
       per task), then
       decoder-only: pack each window;  seq2seq: pack each window's pairs, or the pairs in stream order;
       each window handed on as it is packed, in blocks of about BLOCK_BYTES
    -> handed on in segment order (preserve_order)

No step needs the whole stream: a segment's packed rows leave as soon as its examples are tokenized,
and the memory held is that of the segments in flight (a few per CPU), whatever the stream's length.
The price is that each segment opens again the cache entries it draws from; the task files are read
about once per pair of segments (`segment_partner`).

Every random choice comes from the mixture's seed, and packing works on fixed windows of stream
positions, so the rows and their order depend neither on the segment size nor on how Ray schedules the
segments. Examples travel as int32 token lists with a loss start inside a segment, packed rows as int32
ids plus document lengths (8 KB a row at 2048). Workers expand their batches.

Workers turn their shard into torch batches with `iter_train_batches`. Resuming mid-epoch: the order
is a function of the seed only, so a restarted worker passes `skip_batches=N` to skip the N batches
it has already trained on (the count it checkpointed).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from imlsweep.data.mixture import MixtureConfig
from imlsweep.data.packing import (IGNORE_INDEX, TokenizedExamples, causal_examples, pack_rows,
                                   pack_seq2seq_rows, seq2seq_examples, unpack_rows, unpack_seq2seq_rows)
from imlsweep.data.plan import MixturePlan, SourcePlan, plan_mixture
from imlsweep.data.stream import is_text_addon, open_corpus, render_source, source_items
from imlsweep.data.token_cache import cache_location, cached_task_tokens, settings_key
from imlsweep.errors import UserError

if TYPE_CHECKING:
    import ray.data
    import torch

ModelKind = Literal["causal", "seq2seq"]
PACK_WINDOW = 8192  # stream positions packed together (slots filled: 0.998 at 2048, 0.999 at 8192)
# The stream opens with two small windows, each a segment of its own, so that the first rows wait for a
# few hundred tasks, not for a segment drawn from every task: PACK_WINDOW/16 positions (about 100 rows of
# 2048 at SuperNI lengths, more than a first batch), then PACK_WINDOW/512, which only has to exist (Ray
# Data's iterator fetches the next block before it hands one on when less than a batch would be left)
# and is kept tiny so that the CPUs move on to the full segments at once. Every segment opens its tasks
# again, so the ramp stays this short (PACK_WINDOW/32 then /16 left the first batch waiting for the first
# full segment; /16 then /8 touched twice the tasks).
RAMP_SHIFTS = (4, 9)
SEGMENT_WINDOWS = 4  # windows per work item: larger reads each task fewer times and holds more in flight
# Ray Data merges a segment's packed windows into blocks of about this size: blocks of a few MB keep the
# object store's pages, mapped by the driver and every worker, from growing with the segments in flight.
BLOCK_BYTES = 4 * 2**20
SEQ2SEQ_COLUMNS = ("input_ids", "labels")
# Ray Data's executor learns how many CPUs a stream may use from an autoscaling coordinator, asked at most
# once a second, and the first ask's answer is read at the second: until then it runs one task at a time.
# Every trial's stream would leave all CPUs but one idle for its first second (a third of a cached
# 60k-example trial on 2 CPUs). Asking every LIMITS_REFRESH_S costs one small actor call each time.
LIMITS_REFRESH_S = 0.1


def refresh_limits_sooner() -> None:
    """Have this process's Ray Data executors ask for their resource limits every LIMITS_REFRESH_S (a
    class setting of Ray Data's resource manager; left alone where Ray Data no longer has it). Only
    where Ray Data is loaded: importing it for this would slow every command that reads this module."""
    if "ray.data" not in sys.modules:
        return
    from ray.data._internal.execution.resource_manager import ResourceManager

    if getattr(ResourceManager, "GLOBAL_LIMITS_UPDATE_INTERVAL_S", 0) > LIMITS_REFRESH_S:
        ResourceManager.GLOBAL_LIMITS_UPDATE_INTERVAL_S = LIMITS_REFRESH_S


def check_model_kind(model_kind: str) -> None:
    if model_kind not in ("causal", "seq2seq"):
        raise UserError(f"model kind {model_kind!r}: expected 'causal' or 'seq2seq'")


def tokenize_sources(batch: dict[str, np.ndarray], *, plan: MixturePlan, mixture: MixtureConfig, corpus_dir: str,
                     tokenizer_name: str, model_kind: ModelKind, window_starts: np.ndarray, cache: str,
                     eos_id: int | None = None, settings: str | None = None) -> pa.Table:
    """The tokens of every draw of the sources in `batch` (a corpus task's through the token cache at
    `cache`, with its partner segment's draws when it has to be tokenized: `partner_positions`), each
    with its stream position (`order`) and packing window. The columns are built once for all the
    sources: a segment draws from thousands of tasks, a few examples each. `eos_id` and the trial's
    `settings_key`, when the driver passes them, spare a segment that reads only the cache loading the
    tokenizer (seconds of imports in a fresh worker)."""
    if eos_id is None:
        from imlsweep.data.tokenizer import cached_tokenizer

        eos_id = cached_tokenizer(tokenizer_name).eos_token_id
    settings = settings or settings_key(mixture, tokenizer_name)  # once: a segment reads thousands of entries
    sources: list[Sequence[int]] = []  # views of the cache entries, copied once, into the examples
    targets: list[Sequence[int]] = []
    loss_on_source: list[bool] = []  # per draw: plain-text add-ons train on the whole sequence
    partners = batch.get("partner_positions") or [None] * len(batch["source"])
    for index, positions, partner_positions in zip(batch["source"], batch["positions"], partners):
        source = plan.sources[int(index)]
        if is_text_addon(source):
            drawn_sources, drawn_targets = text_tokens(source, positions, mixture, tokenizer_name)
        else:
            drawn_sources, drawn_targets = cached_task_tokens(source, positions, mixture, corpus_dir, tokenizer_name,
                                                              cache, also=partner_positions, settings=settings)
        sources += drawn_sources
        targets += drawn_targets
        loss_on_source += [source.loss == "sequence"] * len(drawn_sources)
    columns = (causal_columns(sources, targets, eos_id, mixture, np.array(loss_on_source, dtype=bool))
               if model_kind == "causal" else seq2seq_columns(sources, targets, eos_id, mixture))
    orders = np.concatenate([*batch["orders"], np.zeros(0, np.int64)]).astype(np.int64)
    windows = np.searchsorted(window_starts, orders, side="right") - 1
    return pa.table({"order": orders, "window": windows, **columns})


def text_tokens(source: SourcePlan, positions: np.ndarray, mixture: MixtureConfig,
                tokenizer_name: str) -> tuple[list[list[int]], list[list[int]]]:
    """A plain-text add-on's draws: the documents, tokenized (they are not cached: no rendering)."""
    from imlsweep.data.tokenization import PromptTokenizer
    from imlsweep.data.tokenizer import cached_tokenizer

    rendered = render_source(source, positions, mixture, "", None)
    return PromptTokenizer(cached_tokenizer(tokenizer_name)).encode([prompt for _, prompt in rendered])


def causal_columns(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], eos: int, mixture: MixtureConfig,
                   loss_on_source: bool | np.ndarray) -> dict[str, pa.Array]:
    examples = causal_examples(sources, targets, eos, mixture.max_length, mixture.truncation_side, loss_on_source)
    return {"input_ids": pa.LargeListArray.from_arrays(examples.offsets, examples.values),
            "loss_start": pa.array(examples.loss_starts)}


def seq2seq_columns(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], eos: int,
                    mixture: MixtureConfig) -> dict[str, pa.Array]:
    source_ids, target_ids = seq2seq_examples(sources, targets, eos, mixture.max_source_length,
                                              mixture.max_target_length)
    # Arrow lists, not numpy tensors: equal lengths in one block must not change the column type
    return {"input_ids": pa.array(source_ids, type=pa.list_(pa.int64())),
            "labels": pa.array(target_ids, type=pa.list_(pa.int64()))}


def window_number_and_start(table: pa.Table, indices: np.ndarray) -> tuple[int, int]:
    """The window of the examples at `indices` (stream order) and its first stream position."""
    first = int(indices[0])
    return int(table.column("window")[first].as_py()), int(table.column("order")[first].as_py())


def pack_window(table: pa.Table, indices: np.ndarray, *, max_len: int, pad_id: int, seed: int) -> pa.Table:
    """The examples of one window (rows `indices` of the segment's `table`, in stream order) packed into
    compact rows (shuffled with the seed and the window's number; numbered from the window's first
    stream position). The tokens are copied once, into the rows."""
    from ray.data.extensions import ArrowTensorArray

    from imlsweep.data.seeding import keyed_np_rng

    ids = table.column("input_ids").combine_chunks()  # one chunk already: no copy
    offsets = ids.offsets.to_numpy()
    examples = TokenizedExamples(values=ids.flatten().to_numpy(), offsets=offsets - offsets[0],
                                 loss_starts=table.column("loss_start").to_numpy())
    number, start = window_number_and_start(table, indices)
    rows = pack_rows(examples, max_len, pad_id, keyed_np_rng(seed, "packed_rows", number), indices)
    return pa.table({
        "input_ids": ArrowTensorArray.from_numpy(rows["input_ids"]),
        "document_lengths": pa.array(rows["document_lengths"], type=pa.list_(pa.int32())),
        "loss_starts": pa.array(rows["loss_starts"], type=pa.list_(pa.int32())),
        "packed_index": start + np.arange(len(rows["input_ids"]), dtype=np.int64)})


def pack_pair_window(table: pa.Table, indices: np.ndarray, *, max_source: int, max_target: int, pad_id: int,
                     seed: int) -> pa.Table:
    """The (source, target) pairs of one window (rows `indices` of the segment's `table`, in stream
    order) packed into compact encoder-decoder rows (shuffled with the seed and the window's number;
    numbered from the window's first position)."""
    from ray.data.extensions import ArrowTensorArray

    from imlsweep.data.seeding import keyed_np_rng

    number, start = window_number_and_start(table, indices)
    table = table.take(indices)
    rows = pack_seq2seq_rows(table.column("input_ids").to_numpy(zero_copy_only=False),
                             table.column("labels").to_numpy(zero_copy_only=False), max_source, max_target, pad_id,
                             keyed_np_rng(seed, "packed_rows", number))
    return pa.table({
        "input_ids": ArrowTensorArray.from_numpy(rows["input_ids"]),
        "labels": ArrowTensorArray.from_numpy(rows["labels"]),
        "source_lengths": pa.array(rows["source_lengths"], type=pa.list_(pa.int32())),
        "target_lengths": pa.array(rows["target_lengths"], type=pa.list_(pa.int32())),
        "packed_index": start + np.arange(len(rows["input_ids"]), dtype=np.int64)})


def window_starts(total_examples: int, window: int) -> np.ndarray:
    """Where each packing window begins in the stream: the ramp's small windows (`RAMP_SHIFTS`), then
    the rest cut into equal windows of at most `window` positions. A function of the config alone, like
    the rows packed in them."""
    ramp = np.cumsum([0] + [max(1, window >> shift) for shift in RAMP_SHIFTS])
    rest = max(0, total_examples - int(ramp[-1]))
    count = max(1, -(-rest // window))
    # equal windows (to within one position), not full ones and a short last one: segments of as many
    # windows are then equal too, and no CPU ends the stream on a long segment while another idles
    after = ramp[-1] + np.arange(count, dtype=np.int64) * rest // count
    starts = np.unique(np.concatenate([ramp[:-1], after]))
    return starts[starts < total_examples].astype(np.int64)


def segment_starts(total_examples: int, window: int, segment_windows: int) -> np.ndarray:
    """Where each segment begins in the stream: each small first window (`RAMP_SHIFTS`) is a segment of
    its own, so that the first rows wait for those two only; then `segment_windows` windows each. A
    stream no longer than one such segment is one segment: every segment opens its tasks again, and a
    short stream's first row is its last anyway."""
    windows = window_starts(total_examples, window)
    if total_examples <= window * segment_windows:
        return windows[:1]
    ramp = len(RAMP_SHIFTS)
    return np.concatenate([windows[:ramp], windows[ramp::segment_windows]])


def segment_partner(segment: int, first_full: int, count: int) -> int | None:
    """The full segments pair up in stream order ((first, first + 1), (first + 2, first + 3), ...): a
    segment tokenizing a task also tokenizes its partner's draws of it, so that the task file is read
    once for the two. The ramp's segments have none (their rows are the first to leave)."""
    if segment < first_full:
        return None
    partner = first_full + ((segment - first_full) ^ 1)
    return partner if partner < count else None


def segment_items(items: list[dict[str, Any]], starts: np.ndarray) -> list[dict[str, Any]]:
    """The per-source work items cut at the segment `starts` (stream positions): one item per segment,
    holding the sources with draws in it (`bounds` delimit each source's share of the flat `positions`
    and `orders`) and, per source, its partner segment's draws (`partner_bounds`, `partner_positions`;
    `segment_partner`). The second of a pair lists its sources in reverse, so that the two, running at
    once, meet in the middle instead of both reading every task. Pure: the rows of a segment depend
    neither on how the others are cut nor on who tokenizes what."""
    parts: list[dict[int, tuple[np.ndarray, np.ndarray]]] = [{} for _ in starts]
    for item in items:
        order = np.argsort(item["orders"], kind="stable")
        positions, orders = item["positions"][order], item["orders"][order]
        cuts = np.searchsorted(orders, starts[1:])
        for segment, (p, o) in enumerate(zip(np.split(positions, cuts), np.split(orders, cuts))):
            if len(o):
                parts[segment][int(item["source"])] = (p, o)
    first_full = len(RAMP_SHIFTS) if len(starts) > 1 else len(starts)
    none = np.zeros(0, np.int64)
    segments = []
    for segment, part in enumerate(parts):
        partner = segment_partner(segment, first_full, len(starts))
        partner_part = parts[partner] if partner is not None else {}
        sources = sorted(part, reverse=partner is not None and partner < segment)
        positions = [part[source][0] for source in sources]
        orders = [part[source][1] for source in sources]
        theirs = [partner_part.get(source, (none,))[0] for source in sources]
        segments.append({"segment": segment, "source": np.array(sources, dtype=np.int64),
                         "bounds": flat_bounds(orders), "positions": np.concatenate([none, *positions]),
                         "orders": np.concatenate([none, *orders]),
                         "partner_bounds": flat_bounds(theirs), "partner_positions": np.concatenate([none, *theirs])})
    return segments


def flat_bounds(arrays: list[np.ndarray]) -> np.ndarray:
    """Where each array begins in their concatenation, and where the last ends."""
    return np.cumsum([0] + [len(array) for array in arrays]).astype(np.int64)


def segment_rows(batch: dict[str, np.ndarray], *, pack: dict[str, int] | None, **tokenize: Any) -> Iterator[pa.Table]:
    """map_batches body, one segment: its examples tokenized, then (`pack` given) each of its windows
    packed and handed on as it is done (decoder-only rows, or encoder-decoder pairs), or (seq2seq
    unpacked) the pairs in stream order. Yielding window by window lets Ray Data cut the segment's output
    into blocks of `BLOCK_BYTES` instead of holding it whole."""
    tables = []
    for sources, bounds, positions, orders, partner_bounds, partner_positions in zip(
            *(batch[key] for key in ("source", "bounds", "positions", "orders", "partner_bounds", "partner_positions"))):
        spans = list(zip(bounds[:-1], bounds[1:]))
        partner_spans = zip(partner_bounds[:-1], partner_bounds[1:])
        tables.append(tokenize_sources({"source": sources, "positions": [positions[a:b] for a, b in spans],
                                        "orders": [orders[a:b] for a, b in spans],
                                        "partner_positions": [partner_positions[a:b] for a, b in partner_spans]},
                                       **tokenize))
    examples = pa.concat_tables(tables).combine_chunks()
    del tables  # combine_chunks copied them: the segment's examples are held once
    by_order = np.argsort(examples.column("order").to_numpy(), kind="stable")
    if pack is None:
        yield examples.take(by_order).select(["order", *SEQ2SEQ_COLUMNS])
        return
    windows = examples.column("window").to_numpy()[by_order]
    starts = np.flatnonzero(np.diff(windows, prepend=-1))
    pack_one = pack_window if tokenize["model_kind"] == "causal" else pack_pair_window
    for start, end in zip(starts, [*starts[1:], len(windows)]):
        yield pack_one(examples, by_order[start:end], **pack)


def build_train_dataset(mixture: MixtureConfig, corpus_dir: str, tokenizer_name: str, model_kind: ModelKind, *,
                        plan: MixturePlan | None = None, window: int = PACK_WINDOW,
                        segment_windows: int = SEGMENT_WINDOWS, token_cache: str | None = None) -> ray.data.Dataset:
    """The trial's training stream as a Ray Dataset (needs a running Ray), streamed segment by segment.
    `window`: stream positions packed together once the ramp of smaller first windows is past (larger
    packs tighter; `window_starts`). `segment_windows`: windows per
    work item; it changes how the work is split and how much is in flight, never the rows or their order.
    `token_cache`: where tokenized tasks are cached (default: beside the corpus).

    causal: compact packed rows in order (int32 input_ids [max_length], document_lengths, loss_starts,
    packed_index); `iter_train_batches` expands them into int64 PACKED_COLUMNS.
    seq2seq with `mixture.pack_seq2seq`: compact packed pairs of rows (int32 input_ids [max_source_length],
    labels [max_target_length], source_lengths, target_lengths, packed_index), expanded into int64
    PACKED_SEQ2SEQ_COLUMNS; else rows of variable-length int64 input_ids and labels (+ order), in stream order."""
    import ray.data

    refresh_limits_sooner()  # where the stream is iterated; Ray Train's split coordinator: at import, below
    check_model_kind(model_kind)
    if segment_windows < 1:
        raise UserError(f"segment_windows: must be at least 1, got {segment_windows}")
    corpus_dir = str(corpus_dir)
    if plan is None:
        plan = plan_mixture(mixture, open_corpus(corpus_dir).manifest)
    from imlsweep.data.tokenizer import cached_tokenizer

    tokenizer = cached_tokenizer(tokenizer_name)  # fails early, on the driver, for a bad name
    windows = window_starts(plan.total_examples, window)
    starts = segment_starts(plan.total_examples, window, segment_windows)
    segments = segment_items(source_items(plan, mixture), starts)
    dataset = ray.data.from_items(segments, override_num_blocks=len(segments))  # one segment per block
    dataset.context.execution_options.preserve_order = True
    dataset.context.target_max_block_size = BLOCK_BYTES
    pack: dict[str, int] | None = {"pad_id": tokenizer.pad_token_id, "seed": mixture.seed}
    if model_kind == "causal":
        pack["max_len"] = mixture.max_length
    elif mixture.pack_seq2seq:
        pack.update(max_source=mixture.max_source_length, max_target=mixture.max_target_length)
    else:
        pack = None
    return dataset.map_batches(
        segment_rows, batch_size=1, batch_format="numpy",
        fn_kwargs={"pack": pack, "plan": plan, "mixture": mixture, "corpus_dir": corpus_dir,
                   "tokenizer_name": tokenizer_name, "model_kind": model_kind, "window_starts": windows,
                   "cache": cache_location(token_cache, corpus_dir), "eos_id": tokenizer.eos_token_id,
                   "settings": settings_key(mixture, tokenizer_name)})


def train_data_config() -> Any:
    """The `DataConfig` for `TorchTrainer(dataset_config=...)`: keeps the dataset's order on the way to
    the workers (Ray Train still splits rows equally: `streaming_split(equal=True)`)."""
    import ray.train
    from ray.data import ExecutionOptions

    return ray.train.DataConfig(execution_options=ExecutionOptions(preserve_order=True))


def iter_train_batches(shard: Any, batch_size: int, model_kind: ModelKind, *, pad_token_id: int = 0,
                       skip_batches: int = 0, seed: int = 0, group_batches: int = 32,
                       pack_seq2seq: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Torch batches from a worker's shard (`ray.train.get_dataset_shard("train")`) or any Dataset.

    The last batch of a pass may be partial (no example is dropped); workers with equal row counts
    (Ray Train splits equally) still get equal batch counts. seq2seq: within each group of `group_batches` batches, rows are sorted by
    length (length-grouped), the batch order is shuffled with the seed, and each batch is padded to its
    longest row; with `pack_seq2seq` the rows are packed pairs, expanded like decoder-only rows. `skip_batches`
    skips that many batches from the start (to resume mid-epoch)."""
    check_model_kind(model_kind)
    if model_kind == "causal":
        batches = packed_batches(shard, batch_size, unpack_rows)
    elif pack_seq2seq:
        batches = packed_batches(shard, batch_size, unpack_seq2seq_rows)
    else:
        batches = length_grouped_batches(shard, batch_size, pad_token_id, seed, group_batches)
    for number, batch in enumerate(batches):
        if number >= skip_batches:
            yield batch


def packed_batches(shard: Any, batch_size: int,
                   unpack: Callable[[dict[str, Any]], dict[str, np.ndarray]]) -> Iterator[dict[str, torch.Tensor]]:
    import torch

    for batch in shard.iter_batches(batch_size=batch_size, batch_format="numpy"):
        yield {column: torch.from_numpy(array) for column, array in unpack(batch).items()}


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


# Ray Train iterates the stream in an actor of its own (the split coordinator), which imports this
# module when it unpickles the stream's functions: its executor asks early too.
refresh_limits_sooner()
