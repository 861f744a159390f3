"""`imlsweep bench eval`: rank classification against lm-evaluation-harness's loglikelihood path on
the same tiny model and the same items, and batched against one-at-a-time generation.

Items are instances of the bundled SuperNI sample's classification tasks (labels from a small set),
prompted with the task definition; the candidates are the task's distinct labels.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from imlsweep.assets import SUPERNI_SAMPLE_DIR
from imlsweep.output import print_figures

MAX_LABELS = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="tiny-llama", help="decoder-only model (tiny or a local folder)")
    parser.add_argument("--items", type=int, default=240, help="rank-classification items")
    parser.add_argument("--generation-items", type=int, default=32, help="prompts for the generation figure")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="a few items, for a smoke test")


def classification_items(superni_dir: Path, limit: int) -> list[tuple[str, list[str]]]:
    """(prompt, candidates) from tasks whose instances share a few single-reference labels."""
    tasks = []
    for path in sorted((superni_dir / "tasks").glob("*.json")):
        task = json.loads(path.read_text(encoding="utf-8"))
        labels = sorted({instance["output"][0] for instance in task["Instances"]})
        if 2 <= len(labels) <= MAX_LABELS and all(len(instance["output"]) == 1 for instance in task["Instances"]):
            definition = task["Definition"][0]
            tasks.append([(f"{definition}\n\nInput: {instance['input']}\nOutput: ", labels)
                          for instance in task["Instances"]])
    items = [t[rank] for rank in range(max(len(t) for t in tasks)) for t in tasks if rank < len(t)]  # round robin
    return items[:limit]


def harness_choices(model: Any, tokenizer: Any, items: list[tuple[str, list[str]]], batch_size: int) -> list[int]:
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    harness = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
    requests = [Instance(request_type="loglikelihood", doc={}, arguments=(prompt, candidate), idx=index)
                for prompt, candidates in items for index, candidate in enumerate(candidates)]
    scores = [logprob for logprob, _ in harness.loglikelihood(requests, disable_tqdm=True)]
    choices, start = [], 0
    for _, candidates in items:
        item_scores = scores[start:start + len(candidates)]
        choices.append(max(range(len(item_scores)), key=lambda index: (item_scores[index], -index)))
        start += len(candidates)
    return choices


def timed(function: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def run(args: argparse.Namespace) -> int:
    import torch

    from imlsweep.data.tokenizer import cached_tokenizer
    from imlsweep.eval.generation import encode_prompts, generate_token_ids
    from imlsweep.eval.ranking import encode_rank_request, rank_causal
    from imlsweep.train.model import ModelConfig, load_model

    items_limit, gen_items, max_new = (24, 8, 8) if args.quick else (args.items, args.generation_items,
                                                                      args.max_new_tokens)
    model_config = ModelConfig(name=args.model, dropout=0.0)
    tokenizer = cached_tokenizer(model_config.tokenizer_name)
    model = load_model(model_config).eval()
    if model.config.is_encoder_decoder:
        print("error: the harness comparison needs a decoder-only model", file=sys.stderr)
        return 2
    items = classification_items(SUPERNI_SAMPLE_DIR, items_limit)
    print(f"rank classification: {len(items)} items; harness first, then imlsweep", file=sys.stderr)

    harness, harness_s = timed(harness_choices, model, tokenizer, items, args.batch_size)

    def ours() -> list[int]:
        requests = [encode_rank_request(tokenizer, prompt, candidates) for prompt, candidates in items]
        return [result.choice("sum") for result in rank_causal(model, requests, args.batch_size, tokenizer.pad_token_id)]

    with torch.no_grad():
        choices, ours_s = timed(ours)
        prompts = encode_prompts(tokenizer, [prompt for prompt, _ in items[:gen_items]], 1024, seq2seq=False)
        options = dict(max_new_tokens=max_new, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id)
        print(f"generation: {len(prompts)} prompts, {max_new} new tokens, batched then one at a time", file=sys.stderr)
        batched, batched_s = timed(generate_token_ids, model, prompts, batch_size=args.batch_size, **options)
        single, single_s = timed(generate_token_ids, model, prompts, batch_size=1, **options)
    generated = sum(len(tokens) for tokens in batched)
    result = {
        "model": args.model, "items": len(items),
        "items_per_s": len(items) / ours_s, "harness_items_per_s": len(items) / harness_s,
        "speedup": harness_s / ours_s, "same_choices": choices == harness,
        "generation_prompts": len(prompts), "generated_tokens": generated,
        "generation_tokens_per_s": generated / batched_s,
        "generation_tokens_per_s_one_at_a_time": sum(len(tokens) for tokens in single) / single_s,
        "generation_speedup": single_s / batched_s, "same_generations": batched == single,
    }
    print_figures(result, args.json)
    return 0
