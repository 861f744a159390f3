"""Rank classification: score every candidate by its log-likelihood given the prompt.

The prompt is encoded once per item. Decoder-only models see one row per item, the prompt followed by
all candidates, with a tree-shaped attention mask (each candidate sees the prompt and its own earlier
tokens) and position ids that restart after the prompt for each candidate. Encoder-decoder models run
the encoder once per item and the decoder once per candidate on the shared encoder states.
Tokenization follows lm-evaluation-harness (`_encode_pair`), so both score the same token ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from imlsweep.eval.batching import length_sorted_batches


@dataclass(frozen=True)
class RankRequest:
    prompt_ids: list[int]
    candidate_ids: list[list[int]]
    candidate_chars: list[int]


@dataclass(frozen=True)
class RankResult:
    logprob_sum: list[float]
    logprob_per_char: list[float]

    def choice(self, rank_choice: str = "sum") -> int:
        scores = self.logprob_sum if rank_choice == "sum" else self.logprob_per_char
        return max(range(len(scores)), key=lambda index: (scores[index], -index))


def encode_rank_request(tokenizer: Any, prompt: str, candidates: Sequence[str], max_tokens: int | None = None,
                        seq2seq: bool = False) -> RankRequest:
    """Token ids of the prompt and of each candidate as a continuation of it.

    As in lm-evaluation-harness, trailing whitespace moves from the prompt to the candidates and each
    candidate's ids are those of prompt+candidate after the prompt's own ids. `max_tokens` keeps the
    last tokens of the prompt so that the prompt and the longest candidate fit.
    """
    if not candidates:
        raise ValueError("rank classification needs at least one candidate")
    stripped = prompt.rstrip()
    moved = prompt[len(stripped):]
    if seq2seq:
        prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        candidate_ids = [tokenizer(candidate, add_special_tokens=False)["input_ids"] for candidate in candidates]
    else:
        encoded = tokenizer([stripped] + [stripped + moved + candidate for candidate in candidates],
                            add_special_tokens=False)["input_ids"]
        prompt_ids = encoded[0]
        candidate_ids = [whole[len(prompt_ids):] for whole in encoded[1:]]
    if any(not ids for ids in candidate_ids):
        raise ValueError(f"a candidate tokenizes to nothing: {list(candidates)!r}")
    if max_tokens is not None:
        room = max_tokens - (0 if seq2seq else max(len(ids) for ids in candidate_ids))
        prompt_ids = prompt_ids[-max(room, 1):]
    return RankRequest(prompt_ids, candidate_ids, [len(candidate) for candidate in candidates])


def tree_row(request: RankRequest) -> tuple[list[int], list[int], list[int], list[list[int]]]:
    """One decoder-only row: token ids, position ids, the branch of each token (-1 = prompt) and, per
    candidate, the positions whose logits predict its tokens."""
    tokens = list(request.prompt_ids)
    positions = list(range(len(tokens)))
    branches = [-1] * len(tokens)
    predictors = []
    for branch, ids in enumerate(request.candidate_ids):
        start = len(tokens)
        predictors.append([len(request.prompt_ids) - 1] + list(range(start, start + len(ids) - 1)))
        tokens += ids
        positions += range(len(request.prompt_ids), len(request.prompt_ids) + len(ids))
        branches += [branch] * len(ids)
    return tokens, positions, branches, predictors


def tree_attention_mask(branches: list[list[int]], length: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive [batch, 1, length, length] mask: causal, and a candidate token sees the prompt and its
    own branch only. Padding tokens see themselves, which keeps their (unused) outputs finite."""
    branch = torch.full((len(branches), length), -2, dtype=torch.long)  # -2 marks padding
    for row, values in enumerate(branches):
        branch[row, :len(values)] = torch.tensor(values, dtype=torch.long)
    query, key = branch[:, :, None], branch[:, None, :]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    allowed = causal & ((key == -1) | (key == query)) & (key != -2)
    allowed |= torch.eye(length, dtype=torch.bool)
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def _finish(request: RankRequest, sums: list[float]) -> RankResult:
    return RankResult(sums, [total / max(chars, 1) for total, chars in zip(sums, request.candidate_chars)])


@torch.no_grad()
def rank_causal(model: Any, requests: Sequence[RankRequest], batch_size: int, pad_id: int,
                num_batches: int | None = None) -> list[RankResult]:
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype if next(model.parameters()).is_floating_point() else torch.float32
    rows = [tree_row(request) for request in requests]
    results: list[RankResult | None] = [None] * len(requests)
    for batch in length_sorted_batches([len(row[0]) for row in rows], batch_size, num_batches):
        length = max(len(rows[index][0]) for index in batch)
        tokens = torch.full((len(batch), length), pad_id, dtype=torch.long)
        positions = torch.zeros((len(batch), length), dtype=torch.long)
        for slot, index in enumerate(batch):
            row_tokens, row_positions = rows[index][0], rows[index][1]
            tokens[slot, :len(row_tokens)] = torch.tensor(row_tokens)
            positions[slot, :len(row_positions)] = torch.tensor(row_positions)
        mask = tree_attention_mask([rows[index][2] for index in batch], length, dtype)
        # Only positions that predict a candidate token need the (vocabulary-sized) output layer.
        needed = sorted({where for index in batch for predictors in rows[index][3] for where in predictors})
        column = {where: slot for slot, where in enumerate(needed)}
        logits = model(input_ids=tokens.to(device), position_ids=positions.to(device), attention_mask=mask.to(device),
                       logits_to_keep=torch.tensor(needed, device=device)).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1).cpu()
        for slot, index in enumerate(batch):
            request, predictors = requests[index], rows[index][3]
            sums = [float(logprobs[slot, torch.tensor([column[w] for w in where]), torch.tensor(ids)].sum())
                    for where, ids in zip(predictors, request.candidate_ids)]
            results[index] = _finish(request, sums)
    return results  # type: ignore[return-value]


@torch.no_grad()
def rank_seq2seq(model: Any, requests: Sequence[RankRequest], batch_size: int, pad_id: int,
                 num_batches: int | None = None) -> list[RankResult]:
    device = next(model.parameters()).device
    start_id = model.config.decoder_start_token_id
    results: list[RankResult | None] = [None] * len(requests)
    for batch in length_sorted_batches([len(request.prompt_ids) for request in requests], batch_size, num_batches):
        length = max(len(requests[index].prompt_ids) for index in batch)
        prompts = torch.full((len(batch), length), pad_id, dtype=torch.long)
        prompt_mask = torch.zeros((len(batch), length), dtype=torch.long)
        for slot, index in enumerate(batch):
            ids = requests[index].prompt_ids
            prompts[slot, :len(ids)] = torch.tensor(ids)
            prompt_mask[slot, :len(ids)] = 1
        encoded = model.get_encoder()(input_ids=prompts.to(device), attention_mask=prompt_mask.to(device))
        owners = [slot for slot, index in enumerate(batch) for _ in requests[index].candidate_ids]
        candidates = [ids for index in batch for ids in requests[index].candidate_ids]
        width = max(len(ids) for ids in candidates)
        labels = torch.full((len(candidates), width), -100, dtype=torch.long)
        decoder_inputs = torch.full((len(candidates), width), pad_id, dtype=torch.long)
        for row, ids in enumerate(candidates):
            labels[row, :len(ids)] = torch.tensor(ids)
            decoder_inputs[row, :len(ids)] = torch.tensor([start_id] + ids[:-1])
        owner = torch.tensor(owners, device=device)
        hidden = encoded.last_hidden_state.index_select(0, owner)
        logits = model(encoder_outputs=(hidden,), attention_mask=prompt_mask.to(device).index_select(0, owner),
                       decoder_input_ids=decoder_inputs.to(device)).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1).cpu()
        token_logprobs = logprobs.gather(-1, labels.clamp(min=0)[..., None])[..., 0] * (labels != -100)
        sums = token_logprobs.sum(-1).tolist()
        row = 0
        for index in batch:
            count = len(requests[index].candidate_ids)
            results[index] = _finish(requests[index], sums[row:row + count])
            row += count
    return results  # type: ignore[return-value]
