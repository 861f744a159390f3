"""The Ray Data pipeline on the real sample corpus: determinism, label masks, seq2seq batches, shards."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imlsweep.data.mixture import MixtureConfig
from imlsweep.data.packing import IGNORE_INDEX, PACKED_COLUMNS, unpack_rows
from imlsweep.data.plan import plan_mixture
from imlsweep.data.stream import open_corpus, preview_stream
from imlsweep.data.tokenization import PromptTokenizer, token_ids
from imlsweep.data.tokenizer import cached_tokenizer

MIXTURE = MixtureConfig(eps=30, total_examples=96, max_length=384, demonstrations={"shots": 1}, seed=5)


def expanded(rows):
    """Compact dataset rows -> the int64 PACKED_COLUMNS arrays the trainer sees, one dict per row."""
    columns = unpack_rows({"input_ids": np.stack([row["input_ids"] for row in rows]),
                           "document_lengths": [row["document_lengths"] for row in rows],
                           "loss_starts": [row["loss_starts"] for row in rows]})
    return [{column: columns[column][i] for column in PACKED_COLUMNS} for i in range(len(rows))]


@pytest.fixture(scope="module")
def packed_rows(ray_local, sample_corpus):
    from imlsweep.data.pipeline import build_train_dataset

    return expanded(build_train_dataset(MIXTURE, sample_corpus, "tiny", "causal").take_all())


def stacked(rows, column):
    return np.stack([row[column] for row in rows])


def test_same_seed_same_stream_whatever_the_segments(packed_rows, sample_corpus):
    from ray.data._internal.logical.interfaces import LogicalOperator
    from ray.data._internal.logical.operators.all_to_all_operator import AbstractAllToAll

    from imlsweep.data.pipeline import build_train_dataset, iter_train_batches

    again = expanded(build_train_dataset(MIXTURE, sample_corpus, "tiny", "causal", segment_windows=3).take_all())
    for column in PACKED_COLUMNS:
        assert (stacked(again, column) == stacked(packed_rows, column)).all()
    # many windows, cut into segments of 1 and of 3 windows: the same rows, windows in order
    datasets = [build_train_dataset(MIXTURE, sample_corpus, "tiny", "causal", window=16, segment_windows=n)
                for n in (1, 3)]
    raw = [dataset.take_all() for dataset in datasets]
    indices = [row["packed_index"] for row in raw[0]]
    assert indices == sorted(indices) and indices[-1] >= 5 * 16  # windows come out in order, unsorted
    windows = [expanded(rows) for rows in raw]
    for column in PACKED_COLUMNS:
        assert (stacked(windows[0], column) == stacked(windows[1], column)).all()
    documents = [(stacked(rows, "document_ids") >= 0).sum() for rows in (packed_rows, windows[0])]
    assert documents[0] == documents[1] > 0  # the same tokens, packed per window

    def operators(op: LogicalOperator) -> list[LogicalOperator]:
        return [op, *(o for child in op.input_dependencies for o in operators(child))]

    # no step that needs the whole stream: segments are mapped and handed on, never shuffled or sorted
    assert not [op for op in operators(datasets[0]._logical_plan.dag) if isinstance(op, AbstractAllToAll)]
    # resuming mid-epoch skips exactly the batches already trained
    full = [batch["input_ids"] for batch in iter_train_batches(datasets[0], 2, "causal")]
    resumed = [batch["input_ids"] for batch in iter_train_batches(datasets[0], 2, "causal", skip_batches=3)]
    assert len(resumed) == len(full) - 3 > 0 and all((a == b).all() for a, b in zip(resumed, full[3:]))


def test_windows_begin_small_and_segments_hold_their_windows_only():
    """The stream begins with two small windows, then equal windows of at most the window size; a long
    stream is cut into segments of a bounded number of windows (each small window alone, unless the
    stream fits in one segment); together they hold every draw."""
    from imlsweep.data.pipeline import segment_items, segment_starts, window_starts

    rng = np.random.default_rng(0)
    total, window = 10_000, 64
    windows = window_starts(total, window)
    assert windows[:3].tolist() == [0, 4, 5] and len(windows) == 2 + -(-(total - 5) // window)
    assert set(np.diff([*windows, total])[2:]) == {63, 64}  # 9995 positions in 157 windows
    assert window_starts(20, window).tolist() == [0, 4, 5] and window_starts(10**6, 4)[:3].tolist() == [0, 1, 2]
    sources = rng.integers(0, 7, total)
    items = [{"source": s, "positions": rng.integers(0, 50, (sources == s).sum()),
              "orders": rng.permutation(np.flatnonzero(sources == s))} for s in range(7)]
    starts = segment_starts(total, window, 3)
    assert starts.tolist() == [0, 4, *windows[2::3]] and np.diff(starts)[2:].max() <= 3 * window
    assert segment_starts(3 * window, window, 3).tolist() == [0]  # one segment's worth: no ramp of segments
    segments = segment_items(items, starts)
    assert len(segments) == len(starts)
    drawn = set()
    for number, segment in enumerate(segments):
        orders = segment["orders"]
        end = starts[number + 1] if number + 1 < len(starts) else total
        assert orders.min() >= starts[number] and orders.max() < end
        for source, start, end in zip(segment["source"], segment["bounds"][:-1], segment["bounds"][1:]):
            item = items[source]
            at = {int(o): int(p) for o, p in zip(item["orders"], item["positions"])}
            assert all(at[int(o)] == p for o, p in zip(orders[start:end], segment["positions"][start:end]))
        drawn.update(orders.tolist())
    assert drawn == set(range(total))


def test_full_segments_pair_up_and_carry_their_partners_draws():
    """After the ramp, segments pair up in stream order; each carries, per source, its partner's draws
    (to tokenize them when it reads the task), and the second of a pair lists its sources in reverse."""
    from imlsweep.data.pipeline import segment_items, segment_partner, segment_starts

    rng = np.random.default_rng(1)
    total, window = 3000, 64
    sources = rng.integers(0, 9, total)
    items = [{"source": s, "positions": rng.integers(0, 80, (sources == s).sum()),
              "orders": rng.permutation(np.flatnonzero(sources == s))} for s in range(9)]
    starts = segment_starts(total, window, 3)
    segments = segment_items(items, starts)
    assert [segment_partner(k, 2, 7) for k in range(7)] == [None, None, 3, 2, 5, 4, None]

    def draws(segment, source):
        where = np.flatnonzero(segment["source"] == source)
        if not len(where):
            return []
        bounds = segment["bounds"]
        return sorted(segment["positions"][bounds[where[0]]:bounds[where[0] + 1]].tolist())

    for number, segment in enumerate(segments):
        partner = segment_partner(number, 2, len(segments))
        listed = segment["source"].tolist()
        assert listed == sorted(listed, reverse=partner is not None and partner < number)
        for i, source in enumerate(listed):
            carried = segment["partner_positions"][segment["partner_bounds"][i]:segment["partner_bounds"][i + 1]]
            assert sorted(carried.tolist()) == (draws(segments[partner], source) if partner is not None else [])


def test_a_segment_hands_on_each_window_as_it_is_packed(sample_corpus, tmp_path):
    """A segment's rows leave window by window (Ray Data cuts them into blocks), never as one table of
    the whole segment."""
    import inspect

    from imlsweep.data.pipeline import segment_items, segment_rows, segment_starts, window_starts
    from imlsweep.data.stream import source_items

    plan = plan_mixture(MIXTURE, open_corpus(str(sample_corpus)).manifest)
    windows = window_starts(plan.total_examples, 16)
    starts = segment_starts(plan.total_examples, 16, 3)
    segment = segment_items(source_items(plan, MIXTURE), starts)[2]  # the first of three full windows
    pack = {"pad_id": cached_tokenizer("tiny").pad_token_id, "seed": MIXTURE.seed, "max_len": MIXTURE.max_length}
    tables = segment_rows({key: [value] for key, value in segment.items()}, pack=pack, plan=plan, mixture=MIXTURE,
                          corpus_dir=str(sample_corpus), tokenizer_name="tiny", model_kind="causal",
                          window_starts=windows, cache=str(tmp_path))
    assert inspect.isgenerator(tables)
    in_segment = windows[(windows >= starts[2]) & (windows < starts[3])]
    assert len(in_segment) == 3
    assert [table.column("packed_index")[0].as_py() for table in tables] == in_segment.tolist()


@pytest.mark.slow
def test_a_segment_reading_only_the_cache_loads_no_tokenizer(sample_corpus, tmp_path):
    """Loading a tokenizer imports transformers and torch, seconds of a fresh Ray worker's CPU: a segment
    whose draws are all cached, given the driver's EOS id and settings key, does without."""
    import pickle
    import subprocess
    import sys

    from imlsweep.data.pipeline import segment_items, segment_rows, segment_starts, window_starts
    from imlsweep.data.stream import source_items
    from imlsweep.data.token_cache import settings_key

    plan = plan_mixture(MIXTURE, open_corpus(str(sample_corpus)).manifest)
    segment = segment_items(source_items(plan, MIXTURE), segment_starts(plan.total_examples, 16, 1))[2]
    tokenizer = cached_tokenizer("tiny")
    arguments = ({key: [value] for key, value in segment.items()},
                 {"pack": {"pad_id": tokenizer.pad_token_id, "seed": MIXTURE.seed, "max_len": MIXTURE.max_length},
                  "plan": plan, "mixture": MIXTURE, "corpus_dir": str(sample_corpus), "tokenizer_name": "tiny",
                  "model_kind": "causal", "window_starts": window_starts(plan.total_examples, 16),
                  "cache": str(tmp_path / "cache"), "eos_id": tokenizer.eos_token_id,
                  "settings": settings_key(MIXTURE, "tiny")})
    first = list(segment_rows(arguments[0], **arguments[1]))  # fills the cache
    (tmp_path / "segment.pkl").write_bytes(pickle.dumps(arguments))
    script = (f"import pickle, sys\nfrom imlsweep.data.pipeline import segment_rows\n"
              f"batch, kwargs = pickle.load(open({str(tmp_path / 'segment.pkl')!r}, 'rb'))\n"
              f"rows = list(segment_rows(batch, **kwargs))\n"
              f"pickle.dump((rows, sorted({{'transformers', 'torch'}} & set(sys.modules))), sys.stdout.buffer)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True, timeout=120)
    rows, loaded = pickle.loads(done.stdout)
    assert loaded == [] and len(rows) == len(first) and all(a.equals(b) for a, b in zip(rows, first))


def test_the_first_of_a_pair_tokenizes_its_partners_draws(sample_corpus, tmp_path):
    """A segment that reads a task adds its partner's draws of it to the task's entry: the partner finds
    every one of them held and does not read the task file again."""
    from imlsweep.data import token_cache
    from imlsweep.data.pipeline import segment_items, segment_rows, segment_starts, window_starts
    from imlsweep.data.stream import source_items

    plan = plan_mixture(MIXTURE, open_corpus(str(sample_corpus)).manifest)
    windows = window_starts(plan.total_examples, 16)
    first, second = segment_items(source_items(plan, MIXTURE), segment_starts(plan.total_examples, 16, 1))[2:4]
    pack = {"pad_id": cached_tokenizer("tiny").pad_token_id, "seed": MIXTURE.seed, "max_len": MIXTURE.max_length}
    list(segment_rows({key: [value] for key, value in first.items()}, pack=pack, plan=plan, mixture=MIXTURE,
                      corpus_dir=str(sample_corpus), tokenizer_name="tiny", model_kind="causal",
                      window_starts=windows, cache=str(tmp_path)))
    shared = set(first["source"].tolist()) & set(second["source"].tolist())
    assert shared
    for i, index in enumerate(second["source"].tolist()):
        task_id = plan.sources[index].source_id
        key = token_cache.source_key(task_id, str(sample_corpus), token_cache.settings_key(MIXTURE, "tiny"))
        entry = token_cache.read_entry(token_cache.entry_uri(str(tmp_path), key), key)
        assert (entry is not None) == (index in shared)
        if entry is not None:
            wanted = second["positions"][second["bounds"][i]:second["bounds"][i + 1]]
            assert set(wanted.tolist()) <= set(entry.column("position").to_pylist())


def test_packed_labels_mask_exactly_the_sources(packed_rows, sample_corpus):
    tokenizer = cached_tokenizer("tiny")
    corpus = open_corpus(str(sample_corpus))
    plan = plan_mixture(MIXTURE, corpus.manifest)
    first = preview_stream(plan, MIXTURE, str(sample_corpus), 1, PromptTokenizer(tokenizer))[0]
    source, target = token_ids(tokenizer, [first["source"], first["target"]])
    expected = (source + target + [tokenizer.eos_token_id])[-MIXTURE.max_length:]  # left truncation cuts the source
    documents = [(row["input_ids"][row["document_ids"] == d], row["labels"][row["document_ids"] == d])
                 for row in packed_rows for d in range(row["document_ids"].max() + 1)]
    labels = next(labels for ids, labels in documents if ids.tolist() == expected)  # rows are shuffled
    n_source = len(expected) - len(target) - 1
    assert labels[:n_source].tolist() == [IGNORE_INDEX] * n_source
    assert labels[n_source:].tolist() == target + [tokenizer.eos_token_id]
    # every document: labels are either masked or equal to the input, and end in EOS
    for row in packed_rows:
        kept = row["labels"] != IGNORE_INDEX
        assert (row["labels"][kept] == row["input_ids"][kept]).all()
        for document in range(row["document_ids"].max() + 1):
            positions = row["position_ids"][row["document_ids"] == document]
            assert positions.tolist() == list(range(len(positions)))
            assert row["input_ids"][row["document_ids"] == document][-1] == tokenizer.eos_token_id
        assert (row["labels"][row["document_ids"] == -1] == IGNORE_INDEX).all()


def test_seq2seq_pairs_in_length_grouped_padded_batches(ray_local, sample_corpus):
    from imlsweep.data.pipeline import build_train_dataset, iter_train_batches

    mixture = MIXTURE.model_copy(update={"max_source_length": 64, "max_target_length": 8})
    dataset = build_train_dataset(mixture, sample_corpus, "tiny", "seq2seq").materialize()
    assert dataset.count() == 96
    batches = list(iter_train_batches(dataset, 8, "seq2seq", pad_token_id=0, group_batches=4))
    assert len(batches) == 12
    for batch in batches:
        assert set(batch) == {"input_ids", "attention_mask", "labels"}
        assert batch["input_ids"].shape[1] <= 64 and batch["labels"].shape[1] <= 8
        assert (batch["attention_mask"].sum(dim=1).max() == batch["input_ids"].shape[1])  # padded to the longest
    resumed = list(iter_train_batches(dataset, 8, "seq2seq", pad_token_id=0, group_batches=4, skip_batches=10))
    assert len(resumed) == 2 and (resumed[0]["input_ids"] == batches[10]["input_ids"]).all()


@pytest.mark.slow  # two streams through Ray Data
def test_seq2seq_packed_pairs_hold_every_pair_once(ray_local, sample_corpus):
    from imlsweep.data.pipeline import build_train_dataset, iter_train_batches

    mixture = MIXTURE.model_copy(update={"max_source_length": 512, "max_target_length": 64})
    pairs = build_train_dataset(mixture, sample_corpus, "tiny", "seq2seq").take_all()
    packed = build_train_dataset(mixture.model_copy(update={"pack_seq2seq": True}), sample_corpus, "tiny",
                                 "seq2seq").materialize()
    assert packed.count() < len(pairs)
    unpacked = []
    for batch in iter_train_batches(packed, 4, "seq2seq", pack_seq2seq=True):
        assert batch["input_ids"].shape[1] == 512 and batch["labels"].shape[1] == 64
        for row in range(len(batch["input_ids"])):
            source_ids, target_ids = batch["source_document_ids"][row], batch["target_document_ids"][row]
            for document in range(int(target_ids.max()) + 1):
                unpacked.append((batch["input_ids"][row][source_ids == document].tolist(),
                                 batch["labels"][row][target_ids == document].tolist()))
            assert (batch["labels"][row][target_ids == -1] == IGNORE_INDEX).all()
    assert sorted(unpacked) == sorted((list(row["input_ids"]), list(row["labels"])) for row in pairs)


def test_samples_nested_and_disjoint_from_test_and_validation(sample_corpus):
    corpus = open_corpus(str(sample_corpus))
    task = "task190_snli_classification"  # a held-out task with a train pool
    table = corpus.read_task(task).to_pandas()
    held_out = set(table.loc[table["split"] != "train", "example_id"])
    drawn = {}
    for k in (5, 10):
        mixture = MixtureConfig(tasks=[task], samples_per_task=k, encoding={"name": "no_instruction"})
        plan = plan_mixture(mixture, corpus.manifest)
        examples = preview_stream(plan, mixture, str(sample_corpus), plan.total_examples, None)
        drawn[k] = {e["example_id"] for e in examples}
        assert len(drawn[k]) == k and not drawn[k] & held_out
    assert drawn[5] <= drawn[10]


def test_equal_batch_counts_per_worker_with_two_ray_train_workers(ray_local, sample_corpus, tmp_path):
    import ray.train
    from ray.train.torch import TorchTrainer

    from imlsweep.data.pipeline import build_train_dataset, train_data_config

    mixture = MIXTURE.model_copy(update={"max_length": 128, "total_examples": 150})
    dataset = build_train_dataset(mixture, sample_corpus, "tiny", "causal")
    out_dir = tmp_path / "counts"
    out_dir.mkdir()

    def train_loop(config):
        import ray.train

        from imlsweep.data.pipeline import iter_train_batches

        shard = ray.train.get_dataset_shard("train")
        counts = []
        for _ in range(2):  # two epochs
            counts.append(sum(1 for batch in iter_train_batches(shard, 3, "causal")
                              if batch["input_ids"].shape == (3, 128)))
        rank = ray.train.get_context().get_world_rank()
        (config["out"] / f"rank{rank}.json").write_text(json.dumps(counts))

    trainer = TorchTrainer(train_loop, train_loop_config={"out": out_dir},
                           scaling_config=ray.train.ScalingConfig(num_workers=2, use_gpu=False),
                           datasets={"train": dataset}, dataset_config=train_data_config(),
                           run_config=ray.train.RunConfig(name="equal_batches", storage_path=str(tmp_path / "runs")))
    trainer.fit()
    counts = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert counts[0] == counts[1] and counts[0][0] > 0 and counts[0][0] == counts[0][1]


def test_the_streams_executors_ask_for_their_limits_early(ray_local, sample_corpus):
    """Ray Data runs one task at a time until its executor knows its resource limits: where the stream is
    built and in the split coordinator Ray Train iterates it from, they are asked for every LIMITS_REFRESH_S
    instead of once a second."""
    import ray
    from ray.data._internal.execution.resource_manager import ResourceManager

    from imlsweep.data.pipeline import LIMITS_REFRESH_S, build_train_dataset

    dataset = build_train_dataset(MIXTURE, sample_corpus, "tiny", "causal")
    assert ResourceManager.GLOBAL_LIMITS_UPDATE_INTERVAL_S == LIMITS_REFRESH_S
    split = dataset.streaming_split(1, equal=True)[0]
    rows = sum(len(batch["packed_index"]) for batch in split.iter_batches(batch_format="numpy"))
    assert rows == dataset.count() > 0

    def interval(coordinator) -> float:  # runs inside the coordinator actor
        from ray.data._internal.execution.resource_manager import ResourceManager

        return ResourceManager.GLOBAL_LIMITS_UPDATE_INTERVAL_S

    assert ray.get(split._coord_actor.__ray_call__.remote(interval)) == LIMITS_REFRESH_S
