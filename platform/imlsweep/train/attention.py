"""Document attention for packed rows: which kernel keeps packed documents apart, and its masks.

A packed row holds several documents; a token may attend only to tokens of its own document (earlier
ones in a decoder). Three paths do it, chosen per trial by `choose_attention_path`:

- `flash_attention_varlen` (GPU, the optional `flash-attn` package, decoder-only): no mask;
  transformers derives the varlen boundaries from the restarted `position_ids`.
- `flex_attention` (GPU, decoder-only, PyTorch's own FlexAttention): a `BlockMask` built from the document ids,
  handed to transformers' `flex_attention` implementation as the 4-D attention mask, so whole blocks
  of other documents are skipped. FlexAttention has no attention dropout and no backward on CPU.
- `dense_mask` (everywhere, and encoder-decoder rows): a 4-D additive mask under sdpa/eager
  attention, quadratic in the row.

`attends` is the one rule every path's mask follows: same document (and not later, when causal). A
padding query (document -1) attends to every key, so its row stays finite; nothing attends to padding.
Encoder-decoder rows use the same rule three times: the encoder row bidirectional, the decoder row
causal, and each target over the source of its own document (cross-attention).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from torch.nn.attention.flex_attention import BlockMask

AttentionPath = Literal["flash_attention_varlen", "flex_attention", "dense_mask"]

# the transformers `attn_implementation` of each path (None: the model's default, sdpa or eager)
IMPLEMENTATIONS: dict[str, str | None] = {"flash_attention_varlen": "flash_attention_2",
                                          "flex_attention": "flex_attention", "dense_mask": None}


def choose_attention_path(*, use_gpu: bool, flash_attn_installed: bool, torch_has_flex: bool, encoder_decoder: bool,
                          model_supports_flash: bool, model_supports_flex: bool,
                          attention_dropout: float) -> AttentionPath:
    """The fastest path this trial can run: flash-attn varlen where installed, else FlexAttention (it
    has no attention dropout), else the dense mask. Both kernels need a GPU (FlexAttention has no
    backward on CPU) and decoder-only rows: flash-attn varlen takes its boundaries from decoder position
    ids, and T5's relative position bias is a dense [heads, q, k] tensor that FlexAttention would carry
    as a captured buffer, quadratic like the dense mask (and its CPU kernel does not compile)."""
    if not use_gpu or encoder_decoder:
        return "dense_mask"
    if flash_attn_installed and model_supports_flash:
        return "flash_attention_varlen"
    if torch_has_flex and model_supports_flex and attention_dropout == 0:
        return "flex_attention"
    return "dense_mask"


def attention_dropout(hf_config) -> float:
    """The dropout on attention probabilities (T5 applies `dropout_rate` there too)."""
    for key in ("attention_dropout", "attn_pdrop", "attention_probs_dropout_prob", "dropout_rate"):
        if getattr(hf_config, key, None) is not None:
            return float(getattr(hf_config, key))
    return 0.0


def flash_attn_installed() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def torch_has_flex() -> bool:
    try:
        from torch.nn.attention.flex_attention import create_block_mask  # noqa: F401
    except ImportError:
        return False
    return True


def attends(query_doc, key_doc, query_index, key_index, causal: bool):
    """Whether a query of document `query_doc` at `query_index` sees a key (tensors that broadcast,
    or FlexAttention's scalar indices)."""
    allowed = (query_doc == key_doc) & (query_doc >= 0)
    if causal:
        allowed = allowed & (key_index <= query_index)
    return allowed | (query_doc < 0)


def dense_document_mask(query_docs: torch.Tensor, key_docs: torch.Tensor, causal: bool,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`[batch, q]`, `[batch, k]` document ids -> `[batch, 1, q, k]` additive mask (0 = attend, min = blocked)."""
    query_index = torch.arange(query_docs.shape[-1], device=query_docs.device)
    key_index = torch.arange(key_docs.shape[-1], device=key_docs.device)
    allowed = attends(query_docs[:, :, None], key_docs[:, None, :], query_index[:, None], key_index[None, :], causal)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=query_docs.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1)


def flex_document_mask(query_docs: torch.Tensor, key_docs: torch.Tensor, causal: bool) -> BlockMask:
    """The same rule as a FlexAttention `BlockMask` (blocks no query of a block attends to are skipped)."""
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(batch, head, query_index, key_index):
        return attends(query_docs[batch, query_index], key_docs[batch, key_index], query_index, key_index, causal)

    return create_block_mask(mask_mod, query_docs.shape[0], None, query_docs.shape[-1], key_docs.shape[-1],
                             device=query_docs.device)


def document_mask(path: AttentionPath, query_docs: torch.Tensor, key_docs: torch.Tensor, causal: bool,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor | BlockMask | None:
    """The `attention_mask` a model takes on `path` (None for flash-attn varlen: position ids suffice)."""
    if path == "flash_attention_varlen":
        return None
    if path == "flex_attention":
        return flex_document_mask(query_docs, key_docs, causal)
    return dense_document_mask(query_docs, key_docs, causal, dtype)

