"""The training loss: mean negative log-likelihood over target tokens (labels != -100).

In a packed row the token after a document's last token starts the next document, so a prediction
across a document boundary is never scored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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


def batch_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], *, mask_dtype: torch.dtype | None = None,
               document_attention: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean target-token loss of one batch (to backpropagate) and its number of target tokens.

    Decoder-only batches carry `document_ids` (packed rows); with `document_attention` the block-causal
    mask keeps documents apart, without it (flash-attention varlen) the restarted `position_ids` do.
    Encoder-decoder batches carry `attention_mask` and the decoder shifts the labels itself.
    `model` may be a DeepSpeed engine; `mask_dtype` is then its module's dtype.
    """
    from imlsweep.train.attention import block_causal_mask

    if "document_ids" in batch:
        mask = block_causal_mask(batch["document_ids"], mask_dtype or model.dtype) if document_attention else None
        logits = model(input_ids=batch["input_ids"], attention_mask=mask,
                       position_ids=batch["position_ids"]).logits[:, :-1]
        targets = shifted_targets(batch["labels"], batch["document_ids"])
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       labels=batch["labels"]).logits
        targets = batch["labels"]
    nll, count = target_nll_sum(logits, targets)
    return nll / count.clamp(min=1), count
