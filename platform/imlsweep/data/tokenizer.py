"""Tokenizers: a hub id or local folder through transformers, or the bundled tiny one.

The tiny tokenizer is a byte-level BPE trained on the bundled SuperNI sample (`make_tiny_tokenizer`
rebuilds it), so tests and the quickstart need no download. It saves and loads like any other.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from imlsweep.assets import SUPERNI_SAMPLE_DIR, TINY_TOKENIZER_DIR
from imlsweep.errors import UserError

TINY_TOKENIZER = "tiny"
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerFast:
    """`tiny` for the bundled tokenizer; otherwise a local folder or a hub id (fast tokenizers only)."""
    if name_or_path == TINY_TOKENIZER:
        name_or_path = str(TINY_TOKENIZER_DIR)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, use_fast=True)
    except (OSError, ValueError) as error:
        raise UserError(f"tokenizer {name_or_path!r}: cannot be loaded ({error})") from None
    if tokenizer.eos_token_id is None:
        raise UserError(f"tokenizer {name_or_path!r}: has no EOS token; packing needs one to separate documents")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@lru_cache(maxsize=8)
def cached_tokenizer(name_or_path: str) -> PreTrainedTokenizerFast:
    """One tokenizer per process and name: Ray tasks and actors call this instead of reloading."""
    return load_tokenizer(name_or_path)


def sample_texts(superni_dir: Path = SUPERNI_SAMPLE_DIR) -> list[str]:
    texts = []
    for path in sorted((superni_dir / "tasks").glob("*.json")):
        task = json.loads(path.read_text(encoding="utf-8"))
        texts.extend(task["Definition"])
        for example in task["Positive Examples"] + task["Negative Examples"]:
            texts.extend([example["input"], example["output"], example.get("explanation", "")])
        for instance in task["Instances"]:
            texts.append(instance["input"])
            texts.extend(instance["output"])
    return texts


def make_tiny_tokenizer(out_dir: Path = TINY_TOKENIZER_DIR, vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train the bundled byte-level BPE on the SuperNI sample and save it to `out_dir`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(sample_texts(), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)
    wrapped.save_pretrained(out_dir)
    return wrapped


if __name__ == "__main__":
    make_tiny_tokenizer()
