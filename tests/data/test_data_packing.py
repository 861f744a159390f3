"""Packing: label masks, truncation, row filling, document ids and positions, efficiency."""

from __future__ import annotations

import numpy as np
import pytest

from imlsweep.data.packing import (
    IGNORE_INDEX, LengthPool, TokenizedExamples, assign_rows, causal_examples, pack_examples, pack_rows,
    packing_efficiency, unpack_rows,
)

EOS, PAD = 2, 0


def test_loss_starts_after_the_source():
    examples = causal_examples([[10, 11, 12], [13]], [[20, 21], []], EOS, max_len=16)
    assert examples.ids(0).tolist() == [10, 11, 12, 20, 21, EOS] and examples.ids(1).tolist() == [13, EOS]
    assert examples.loss_starts.tolist() == [3, 1]
    assert causal_examples([[10, 11]], [[20]], EOS, 16, loss_on_source=True).loss_starts.tolist() == [0]


def test_left_truncation_keeps_the_target_end():
    examples = causal_examples([list(range(100, 110)), [7]], [[20, 21], [8]], EOS, max_len=5)
    assert examples.ids(0).tolist() == [108, 109, 20, 21, EOS] and examples.loss_starts[0] == 2
    assert examples.ids(1).tolist() == [7, 8, EOS] and examples.loss_starts[1] == 1  # short ones untouched
    right = causal_examples([list(range(100, 110))], [[20, 21]], EOS, 5, side="right")
    assert right.ids(0).tolist() == [100, 101, 102, 103, 104] and right.loss_starts[0] == 5  # no target left


def test_packed_rows_keep_documents_apart():
    examples = causal_examples([[10, 11], [12], [13, 14, 15, 16]], [[20], [21, 22], [23]], EOS, max_len=8)
    packed = pack_examples(examples, max_len=8, pad_id=PAD)
    # the two 4-token examples fill row 0 exactly, which beats the 6-token one there
    assert packed["input_ids"].tolist() == [[10, 11, 20, EOS, 12, 21, 22, EOS], [13, 14, 15, 16, 23, EOS, PAD, PAD]]
    assert packed["labels"].tolist() == [
        [-100, -100, 20, EOS, -100, 21, 22, EOS], [-100, -100, -100, -100, 23, EOS, -100, -100]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 0, 0]]
    assert packed["document_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, -1, -1]]
    assert packing_efficiency(packed["document_ids"]) == 14 / 16


def test_rows_take_the_longest_that_fits_and_a_pair_for_the_last_place():
    assert assign_rows([5, 4, 3, 2], max_len=7) == [[0, 3], [1, 2]]
    assert assign_rows([1, 6, 6, 1], max_len=7) == [[0, 1], [2, 3]]  # members stay in input order
    # 5 + 4 leaves 1, less than any example: the pair 3 + 2 fills row 0 instead, and 2 rows suffice
    # where longest-first (or best-fit decreasing) needs 3
    assert assign_rows([2, 5, 4, 3, 4, 2], max_len=10) == [[0, 1, 3], [2, 4, 5]]


@pytest.mark.parametrize("scale", [1, 2, 8])  # every length even, or a multiple of 8: many sums are missing
def test_best_pair_is_the_fullest_then_most_even_pair_left(scale):
    rng = np.random.default_rng(scale)
    for _ in range(200):
        lengths = scale * rng.integers(1, 40 // scale + 2, size=int(rng.integers(2, 30)))
        pool = LengthPool(lengths, max_len=200)
        room, better_than = int(rng.integers(2, 100)), int(rng.integers(0, 60))
        pairs = [(int(lengths[i]), int(lengths[j])) for i in range(len(lengths)) for j in range(len(lengths))
                 if i != j and lengths[i] <= lengths[j] and better_than < lengths[i] + lengths[j] <= room]
        expected = max(pairs, key=lambda pair: (sum(pair), pair[0])) if pairs else None
        assert pool.best_pair(room, better_than) == expected
        assert pool.pair_by_smaller(room, better_than) == expected  # what best_pair answers past its steps


def test_packing_a_window_by_indices_equals_packing_its_examples_taken_out():
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 50, size=300)
    examples = causal_examples([rng.integers(3, 90, n - 1).tolist() for n in lengths], [[]] * len(lengths), EOS, 64)
    window = np.sort(rng.choice(len(lengths), size=120, replace=False))
    taken = TokenizedExamples(values=np.concatenate([examples.ids(i) for i in window]),
                              offsets=np.concatenate([[0], np.cumsum(examples.lengths[window])]),
                              loss_starts=examples.loss_starts[window])
    by_indices = pack_rows(examples, 64, PAD, np.random.default_rng(5), indices=window)
    alone = pack_rows(taken, 64, PAD, np.random.default_rng(5))
    assert (by_indices["input_ids"] == alone["input_ids"]).all()
    for column in ("document_lengths", "loss_starts"):
        assert [part.tolist() for part in by_indices[column]] == [part.tolist() for part in alone[column]]


def test_assign_rows_rejects_an_example_longer_than_a_row():
    with pytest.raises(ValueError, match="example 1 has 9 tokens, more than max_len 8"):
        assign_rows([3, 9], max_len=8)


def test_rows_shuffle_with_the_seed_and_lose_nothing():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 40, size=200)
    examples = causal_examples([list(range(n - 1)) for n in lengths], [[]] * len(lengths), EOS, max_len=64)
    once, again = (pack_rows(examples, 64, PAD, np.random.default_rng(7)) for _ in range(2))
    assert (once["input_ids"] == again["input_ids"]).all()
    assert not (once["input_ids"] == pack_rows(examples, 64, PAD)["input_ids"]).all()
    documents = sorted(np.concatenate(once["document_lengths"]).tolist())
    assert documents == sorted(lengths.tolist())


def test_heavy_tailed_lengths_pack_tightly():
    rng = np.random.default_rng(0)
    lengths = np.minimum((20 * (1 + rng.pareto(1.1, size=8192))).astype(int), 2047)  # many near the cap
    examples = causal_examples([list(range(n)) for n in lengths], [[]] * len(lengths), EOS, max_len=2048)
    packed = pack_examples(examples, max_len=2048, pad_id=PAD)
    assert packing_efficiency(packed["document_ids"]) > 0.99
    assert int((packed["document_ids"] >= 0).sum()) == int(lengths.sum()) + len(lengths)  # nothing lost


def test_unpack_masks_padding_and_sources():
    rows = unpack_rows({"input_ids": np.array([[5, 6, 7, 8, PAD]], dtype=np.int32),
                        "document_lengths": [np.array([2, 2])], "loss_starts": [np.array([1, 0])]})
    assert rows["labels"].tolist() == [[-100, 6, 7, 8, -100]]
    assert rows["document_ids"].tolist() == [[0, 0, 1, 1, -1]]
    assert rows["input_ids"].dtype == np.int64 and rows["labels"][0, -1] == IGNORE_INDEX
