"""Document attention paths and packed encoder-decoder rows: the packed loss equals the unpacked loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imlsweep.data.packing import (assign_pair_rows, causal_examples, pack_examples, pack_seq2seq_rows,
                                   unpack_seq2seq_rows)
from imlsweep.data.pipeline import padded_pair_batch
from imlsweep.train.attention import IMPLEMENTATIONS, choose_attention_path
from imlsweep.train.loss import batch_loss, document_shift_right
from imlsweep.train.model import ModelConfig, attention_path, load_model, model_config

PAD = 2
GPU_FLEX = dict(use_gpu=True, flash_attn_installed=False, torch_has_flex=True, encoder_decoder=False,
                model_supports_flash=True, model_supports_flex=True, attention_dropout=0.0)


def test_attention_path_choice():
    assert choose_attention_path(**GPU_FLEX) == "flex_attention"
    assert choose_attention_path(**{**GPU_FLEX, "flash_attn_installed": True}) == "flash_attention_varlen"
    # FlexAttention has no attention dropout and no backward on CPU; nor does a model without it run it;
    # encoder-decoder rows (T5's dense position bias) take the dense mask
    for change in ({"attention_dropout": 0.1}, {"use_gpu": False}, {"torch_has_flex": False},
                   {"model_supports_flex": False}, {"encoder_decoder": True, "flash_attn_installed": True}):
        assert choose_attention_path(**{**GPU_FLEX, **change}) == "dense_mask"
    assert attention_path(model_config(ModelConfig(name="tiny-t5", dropout=0.0)), use_gpu=False) == "dense_mask"


def pairs(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(source, target) ids of four examples, each ending with EOS (1), as the data stage makes them."""
    rng = np.random.default_rng(seed)
    return [(np.append(rng.integers(3, 2000, source), 1), np.append(rng.integers(3, 2000, target), 1))
            for source, target in [(9, 3), (5, 6), (12, 1), (7, 4)]]


def test_pair_rows_respect_both_lengths():
    rows = assign_pair_rows([8, 6, 5, 3], [2, 7, 2, 2], max_source=11, max_target=8)
    assert rows == [[0, 3], [1], [2]]  # 6 + 5 fit the source row but not the target row (7 + 2 > 8)
    with pytest.raises(ValueError, match="example 1 has a target of 9 tokens"):
        assign_pair_rows([1, 2], [3, 9], max_source=4, max_target=8)


def test_document_shift_right_restarts_each_target():
    labels = torch.tensor([[10, 11, 1, 20, 1, -100]])
    document_ids = torch.tensor([[0, 0, 0, 1, 1, -1]])
    assert document_shift_right(labels, document_ids, start_id=0, pad_id=2).tolist() == [[0, 10, 11, 0, 20, 0]]


def test_packed_t5_loss_equals_unpacked_loss():
    model = load_model(ModelConfig(name="tiny-t5", dropout=0.0)).eval()
    examples = pairs(seed=3)
    compact = pack_seq2seq_rows([s for s, _ in examples], [t for _, t in examples], max_source=40, max_target=20,
                                pad_id=PAD)
    assert len(compact["input_ids"]) == 1  # all four side by side, with padding after them
    packed_batch = {key: torch.from_numpy(value) for key, value in unpack_seq2seq_rows(compact).items()}
    with torch.no_grad():
        packed, packed_count = batch_loss(model, packed_batch)
        total, count = 0.0, 0
        for source, target in examples:
            loss, n = batch_loss(model, padded_pair_batch([(source, target)], PAD))
            total, count = total + loss * n, count + n
        # one document per row for the masks and decoder inputs: sources and targets see each other
        mixed = {**packed_batch, "source_document_ids": packed_batch["source_document_ids"].clamp(max=0),
                 "target_document_ids": packed_batch["target_document_ids"].clamp(max=0)}
        leaky, _ = batch_loss(model, mixed)
    assert int(packed_count) == count == sum(len(t) for _, t in examples)
    assert torch.allclose(packed, total / count, atol=1e-5)
    assert not torch.allclose(leaky, total / count, atol=1e-3)


@pytest.mark.slow  # compiles FlexAttention for CPU
def test_flex_attention_block_mask_gives_the_dense_masks_loss():
    """FlexAttention runs forward on CPU (compiled; it has no backward there, so CPU trials take the
    dense mask): the block mask built from document ids gives the dense mask's packed loss."""
    examples = pairs(seed=4)
    batch = pack_examples(causal_examples([s for s, _ in examples], [t for _, t in examples], eos_id=1, max_len=64),
                          max_len=64, pad_id=PAD)
    batch = {key: torch.from_numpy(value) for key, value in batch.items()}
    losses = {}
    for path in ("dense_mask", "flex_attention"):
        model = load_model(ModelConfig(name="tiny-llama", dropout=0.0), attn_implementation=IMPLEMENTATIONS[path]).eval()
        with torch.no_grad():
            losses[path], _ = batch_loss(model, batch, attention=path)
    assert torch.allclose(losses["flex_attention"], losses["dense_mask"], atol=1e-5)
