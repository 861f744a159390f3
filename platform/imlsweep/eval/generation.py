"""Greedy generation until EOS or `max_new_tokens`, in length-sorted batches with a KV cache.

Decoder-only prompts are padded on the left so that every row's next token follows its own last
prompt token; encoder-decoder prompts are padded on the right. With ZeRO-3 sharded parameters every
rank must keep stepping until all ranks are done (`synced_gpus`), and run the same number of batches.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from imlsweep.eval.batching import length_sorted_batches


def encode_prompts(tokenizer: Any, prompts: Sequence[str], max_source_tokens: int, seq2seq: bool) -> list[list[int]]:
    """Token ids of each prompt, keeping its last `max_source_tokens` (the end holds the question)."""
    encoded = tokenizer(list(prompts), add_special_tokens=seq2seq)["input_ids"]
    return [ids[-max_source_tokens:] for ids in encoded]


def pad_batch(rows: Sequence[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(row) for row in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for slot, row in enumerate(rows):
        span = slice(length - len(row), length) if left else slice(0, len(row))
        ids[slot, span] = torch.tensor(row, dtype=torch.long)
        mask[slot, span] = 1
    return ids, mask


@torch.no_grad()
def generate_token_ids(model: Any, prompt_ids: Sequence[list[int]], *, max_new_tokens: int, batch_size: int,
                       eos_id: int, pad_id: int, num_batches: int | None = None,
                       synced_ranks: bool = False) -> list[list[int]]:
    """Greedy continuations (without the prompt, cut at the first EOS, EOS excluded)."""
    device = next(model.parameters()).device
    seq2seq = bool(model.config.is_encoder_decoder)
    outputs: list[list[int] | None] = [None] * len(prompt_ids)
    for batch in length_sorted_batches([len(ids) for ids in prompt_ids], batch_size, num_batches):
        ids, mask = pad_batch([prompt_ids[index] for index in batch], pad_id, left=not seq2seq)
        generated = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False, num_beams=1,
            max_new_tokens=max_new_tokens, eos_token_id=eos_id, pad_token_id=pad_id, use_cache=True,
            synced_gpus=synced_ranks)
        new_tokens = generated if seq2seq else generated[:, ids.shape[1]:]
        for slot, index in enumerate(batch):
            outputs[index] = cut_at_eos(new_tokens[slot].tolist(), eos_id, pad_id, skip_first=seq2seq)
    return outputs  # type: ignore[return-value]


def cut_at_eos(tokens: list[int], eos_id: int, pad_id: int, skip_first: bool) -> list[int]:
    """Tokens before the first EOS; encoder-decoder outputs start with the decoder start token."""
    if skip_first:
        tokens = tokens[1:]
    if eos_id in tokens:
        tokens = tokens[:tokens.index(eos_id)]
    while tokens and tokens[-1] == pad_id and pad_id != eos_id:
        tokens = tokens[:-1]
    return tokens


def generate_texts(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int, batch_size: int,
                   max_source_tokens: int, num_batches: int | None = None, synced_ranks: bool = False) -> list[str]:
    seq2seq = bool(model.config.is_encoder_decoder)
    prompt_ids = encode_prompts(tokenizer, prompts, max_source_tokens, seq2seq)
    outputs = generate_token_ids(model, prompt_ids, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                 eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
                                 num_batches=num_batches, synced_ranks=synced_ranks)
    return [tokenizer.decode(tokens, skip_special_tokens=True).strip() for tokens in outputs]
