"""`train.activation_checkpointing`: the same loss and gradients as without it, on packed and seq2seq rows
(dropout on, so the recomputed layers must draw the same masks). A model that cannot checkpoint:
tests/sweep/test_memory_plan.py."""

from __future__ import annotations

import pytest
import torch

from imlsweep.train.loss import batch_loss
from imlsweep.train.model import ModelConfig, enable_activation_checkpointing, load_model
from test_train_units import documents, packed_row


def loss_and_gradients(name: str, batch: dict[str, torch.Tensor], checkpointed: bool):
    model = load_model(ModelConfig(name=name, dropout=0.1)).train()
    if checkpointed:
        enable_activation_checkpointing(model)
        assert model.is_activation_checkpointing
    torch.manual_seed(7)  # the same dropout masks in both runs
    loss, _ = batch_loss(model, batch)
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def seq2seq_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    labels = torch.randint(3, 2000, (2, 6), generator=generator)
    labels[1, 4:] = -100
    attention_mask = torch.ones(2, 9, dtype=torch.long)
    attention_mask[0, 7:] = 0
    return {"input_ids": torch.randint(3, 2000, (2, 9), generator=generator), "attention_mask": attention_mask,
            "labels": labels}


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-opt", "tiny-t5"])
def test_checkpointed_loss_and_gradients_equal_plain_ones(name):
    batch = seq2seq_batch() if name == "tiny-t5" else packed_row(documents(seed=2), pad=3)
    plain_loss, plain_grads = loss_and_gradients(name, batch, checkpointed=False)
    loss, grads = loss_and_gradients(name, batch, checkpointed=True)
    assert torch.equal(loss, plain_loss)
    assert grads.keys() == plain_grads.keys() and len(grads) > 10
    for key, grad in grads.items():  # equal up to float32 rounding of the recomputed layers, at each tensor's scale
        plain = plain_grads[key]
        assert torch.allclose(grad, plain, rtol=1e-5, atol=1e-5 * float(plain.abs().max())), key
