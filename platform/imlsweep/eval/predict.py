"""Eval items -> predictions (generation or rank classification) -> per-item and per-task metrics."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import asdict, dataclass
from statistics import fmean
from typing import Any, Sequence

from imlsweep.eval.config import EvalConfig
from imlsweep.eval.metrics import exact_match, rouge_l

RANK, GENERATION = "rank", "generation"


@dataclass(frozen=True)
class EvalItem:
    example_id: str
    task_id: str
    benchmark: str
    category: str
    level: str
    shots: int
    prompt: str
    references: list[str]
    candidates: list[str] | None

    @classmethod
    def from_rendered(cls, example: Any, shots: int) -> "EvalItem":
        """From `imlsweep.data.render.RenderedExample`."""
        candidates = list(example.candidates) if example.candidates is not None else None
        return cls(example_id=str(example.example_id), task_id=example.task_id, benchmark=example.benchmark,
                   category=example.category, level=example.level, shots=shots, prompt=example.source,
                   references=list(example.outputs), candidates=candidates or None)

    def mode(self, mode: str) -> str:
        if mode == RANK and not self.candidates:
            raise ValueError(f"task {self.task_id!r}: example {self.example_id!r} has no candidates to rank")
        return RANK if mode == RANK or (mode == "auto" and self.candidates) else GENERATION


def prompt_hash(prompt: str) -> str:
    return hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:16]


def prediction_row(item: EvalItem, mode: str, prediction: str, logprob_sum: list[float] | None = None,
                   logprob_per_char: list[float] | None = None, chosen_sum: int | None = None,
                   chosen_per_char: int | None = None) -> dict[str, Any]:
    """One row of predictions.parquet with the item's metrics (0..1). For rank classification the
    prediction is the candidate the configured score picked; both choices are recorded."""
    row = asdict(item)
    del row["prompt"]

    def is_correct(choice: int | None) -> bool | None:
        return None if choice is None else item.candidates[choice] in item.references  # type: ignore[index]

    row.update(prompt_hash=prompt_hash(item.prompt), mode=mode, prediction=prediction,
               logprob_sum=logprob_sum, logprob_per_char=logprob_per_char, chosen_sum=chosen_sum,
               chosen_per_char=chosen_per_char, correct_sum=is_correct(chosen_sum),
               correct_per_char=is_correct(chosen_per_char),
               correct=(prediction in item.references) if mode == RANK else None,
               rougeL=rouge_l(prediction, item.references), exact_match=exact_match(prediction, item.references))
    return row


def predict_items(model: Any, tokenizer: Any, items: Sequence[EvalItem], config: EvalConfig,
                  batch_counts: tuple[int, int] | None = None, synced_ranks: bool = False) -> list[dict[str, Any]]:
    """Prediction rows in item order. `batch_counts` (rank batches, generation batches) makes every
    rank of a distributed evaluation run the same number of forward passes."""
    from imlsweep.eval.generation import generate_texts
    from imlsweep.eval.ranking import encode_rank_request, rank_causal, rank_seq2seq

    seq2seq = bool(model.config.is_encoder_decoder)
    max_source = source_budget(model, config)
    modes = [item.mode(config.mode) for item in items]
    rank_items = [index for index, mode in enumerate(modes) if mode == RANK]
    gen_items = [index for index, mode in enumerate(modes) if mode == GENERATION]
    rows: list[dict[str, Any] | None] = [None] * len(items)
    rank_batches, gen_batches = batch_counts if batch_counts is not None else (None, None)

    if rank_items or rank_batches:
        requests = [encode_rank_request(tokenizer, items[i].prompt, items[i].candidates or [], max_source, seq2seq)
                    for i in rank_items]
        rank = rank_seq2seq if seq2seq else rank_causal
        results = rank(model, requests, config.batch_size, tokenizer.pad_token_id, rank_batches)
        for index, result in zip(rank_items, results):
            chosen = result.choice(config.rank_choice)
            rows[index] = prediction_row(items[index], RANK, items[index].candidates[chosen],  # type: ignore[index]
                                         result.logprob_sum, result.logprob_per_char,
                                         result.choice("sum"), result.choice("per_char"))
    if gen_items or gen_batches:
        texts = generate_texts(model, tokenizer, [items[i].prompt for i in gen_items],
                               max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
                               max_source_tokens=max_source, num_batches=gen_batches, synced_ranks=synced_ranks)
        for index, text in zip(gen_items, texts):
            rows[index] = prediction_row(items[index], GENERATION, text)
    return rows  # type: ignore[return-value]


def source_budget(model: Any, config: EvalConfig) -> int:
    """Prompt tokens kept: the configured limit, else what the context leaves for the answer."""
    if config.max_source_tokens is not None:
        return config.max_source_tokens
    context = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if model.config.is_encoder_decoder or context is None:
        return 1024
    return max(context - config.max_new_tokens, 1)


def task_metrics(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (task, shots): ROUGE-L, exact match, accuracy (rank items only), score, n_eval; x100."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["task_id"], row["shots"])].append(row)
    tasks = []
    for (task_id, shots), members in sorted(groups.items()):
        ranked = [row["correct"] for row in members if row["mode"] == RANK]
        accuracy = 100.0 * fmean(ranked) if ranked else None
        rouge = 100.0 * fmean(row["rougeL"] for row in members)
        first = members[0]
        tasks.append({
            "task_id": task_id, "shots": shots, "benchmark": first["benchmark"], "category": first["category"],
            "level": first["level"], "rougeL": rouge, "exact_match": 100.0 * fmean(row["exact_match"] for row in members),
            "accuracy": accuracy, "score": accuracy if accuracy is not None else rouge, "n_eval": len(members)})
    return tasks
