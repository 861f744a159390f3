"""Document attention for packed rows: a block-causal mask built from `document_ids`.

With sdpa or eager attention, restarted `position_ids` alone do not keep packed documents apart; a
4-D additive mask that lets a token see only earlier tokens of its own document does. Padding
(`document_ids == -1`) sees only itself, so its attention row stays finite. On GPU with flash-attention
installed the trainer passes no mask: transformers derives varlen boundaries from the restarted
`position_ids` instead.
"""

from __future__ import annotations

import torch


def block_causal_mask(document_ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`[batch, seq]` document ids -> `[batch, 1, seq, seq]` additive mask (0 = attend, min = blocked)."""
    seq_len = document_ids.shape[-1]
    same_document = document_ids.unsqueeze(-1) == document_ids.unsqueeze(-2)
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=document_ids.device).tril()
    allowed = same_document & causal & (document_ids.unsqueeze(-1) >= 0)
    allowed |= torch.eye(seq_len, dtype=torch.bool, device=document_ids.device)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=document_ids.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1)

