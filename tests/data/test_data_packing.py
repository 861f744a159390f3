"""Packing: label masks, truncation, document ids and positions, efficiency."""

from __future__ import annotations

import numpy as np

from imlsweep.data.packing import IGNORE_INDEX, example_tokens, pack_examples, packing_efficiency, truncate

EOS, PAD = 2, 0


def test_labels_mask_exactly_the_source():
    ids, labels = example_tokens([10, 11, 12], [20, 21], EOS)
    assert ids == [10, 11, 12, 20, 21, EOS]
    assert labels == [IGNORE_INDEX] * 3 + [20, 21, EOS]
    assert example_tokens([10, 11], [20], EOS, loss_on_source=True)[1] == [10, 11, 20, EOS]


def test_left_truncation_keeps_the_target_end():
    ids, labels = example_tokens(list(range(100, 110)), [20, 21], EOS)
    kept_ids, kept_labels = truncate(ids, labels, 5, "left")
    assert kept_ids == [108, 109, 20, 21, EOS] and kept_labels == [IGNORE_INDEX] * 2 + [20, 21, EOS]
    assert truncate(ids, labels, 5, "right")[0] == [100, 101, 102, 103, 104]


def test_packed_rows_keep_documents_apart():
    examples = [example_tokens([10, 11], [20], EOS), example_tokens([12], [21, 22], EOS),
                example_tokens([13, 14, 15, 16], [23], EOS)]
    packed = pack_examples(examples, max_len=8, pad_id=PAD)
    assert packed["input_ids"].tolist() == [[10, 11, 20, EOS, 12, 21, 22, EOS], [13, 14, 15, 16, 23, EOS, PAD, PAD]]
    assert packed["labels"].tolist() == [
        [-100, -100, 20, EOS, -100, 21, 22, EOS], [-100, -100, -100, -100, 23, EOS, -100, -100]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 0, 0]]
    assert packed["document_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, -1, -1]]
    assert packing_efficiency(packed["document_ids"]) == 14 / 16


def test_first_fit_fills_gaps_and_reaches_high_efficiency():
    rng = np.random.default_rng(0)
    lengths = np.minimum(np.exp(rng.normal(5.3, 0.9, size=8192)).astype(int) + 5, 2048)
    examples = [(list(range(n)), list(range(n))) for n in lengths]
    packed = pack_examples(examples, max_len=2048, pad_id=PAD)
    assert packing_efficiency(packed["document_ids"]) > 0.99
    assert int((packed["document_ids"] >= 0).sum()) == int(lengths.sum())  # nothing lost
