"""The training loss: mean negative log-likelihood over target tokens (labels != -100).

In a packed decoder row the token after a document's last token starts the next document, so a
prediction across a document boundary is never scored. A packed encoder-decoder row's targets are
scored in place: each target document's decoder inputs restart from the decoder start token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from imlsweep.train.attention import AttentionPath, document_mask

IGNORE_INDEX = -100


def shifted_targets(labels: torch.Tensor, document_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Labels aligned with the logits that predict them (`[batch, seq-1]`), -100 where not scored."""
    targets = labels[:, 1:].clone()
    if document_ids is not None:
        targets[document_ids[:, 1:] != document_ids[:, :-1]] = IGNORE_INDEX
    return targets


def target_nll_sum(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL over scored positions and their count; `logits` already aligned with `targets`."""
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                          ignore_index=IGNORE_INDEX, reduction="sum")
    return nll, (targets != IGNORE_INDEX).sum()


def document_shift_right(labels: torch.Tensor, document_ids: torch.Tensor, start_id: int, pad_id: int) -> torch.Tensor:
    """Decoder inputs of a packed target row: each document's labels shifted right by one, starting
    with `start_id` (what an encoder-decoder does to one target, per document)."""
    shifted = torch.cat([torch.full_like(labels[:, :1], start_id), labels[:, :-1]], dim=1)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    shifted[starts] = start_id
    return shifted.masked_fill(shifted == IGNORE_INDEX, pad_id)


def packed_seq2seq_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor], attention: AttentionPath,
                          dtype: torch.dtype) -> torch.Tensor:
    """Logits of packed encoder-decoder rows: the encoder row with document-diagonal attention, the
    decoder row block-causal, each target over its own source. The encoder runs first so the decoder's
    cross-attention gets a mask of its own (`attention_mask` with `encoder_outputs` masks only that)."""
    module = getattr(model, "module", model)  # a DeepSpeed engine's model
    source, target = batch["source_document_ids"], batch["target_document_ids"]
    encoded = module.get_encoder()(input_ids=batch["input_ids"],
                                   attention_mask=document_mask(attention, source, source, False, dtype))
    decoder_input_ids = document_shift_right(batch["labels"], target, module.config.decoder_start_token_id,
                                             module.config.pad_token_id)
    return model(encoder_outputs=encoded, attention_mask=document_mask(attention, target, source, False, dtype),
                 decoder_input_ids=decoder_input_ids,
                 decoder_attention_mask=document_mask(attention, target, target, True, dtype)).logits


def batch_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], *, attention: AttentionPath = "dense_mask",
               mask_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean target-token loss of one batch (to backpropagate) and its number of target tokens.

    Packed decoder-only rows carry `document_ids`, packed encoder-decoder rows `source_document_ids`
    and `target_document_ids`: the masks of `attention` (the model's path) keep their documents apart.
    Padded encoder-decoder batches carry `attention_mask` and the decoder shifts the labels itself.
    `model` may be a DeepSpeed engine; `mask_dtype` is then its module's dtype.
    """
    dtype = mask_dtype or model.dtype
    if "document_ids" in batch:
        mask = document_mask(attention, batch["document_ids"], batch["document_ids"], causal=True, dtype=dtype)
        logits = model(input_ids=batch["input_ids"], attention_mask=mask,
                       position_ids=batch["position_ids"]).logits[:, :-1]
        targets = shifted_targets(batch["labels"], batch["document_ids"])
    elif "target_document_ids" in batch:
        logits, targets = packed_seq2seq_logits(model, batch, attention, dtype), batch["labels"]
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       labels=batch["labels"]).logits
        targets = batch["labels"]
    nll, count = target_nll_sum(logits, targets)
    return nll / count.clamp(min=1), count
