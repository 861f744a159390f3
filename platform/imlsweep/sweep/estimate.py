"""What a trial will cost: training examples and tokens, evaluation items, seconds.

With a built corpus, the examples are the trial's mixture plan over the corpus manifest (pool sizes, the
k per task, the stream's total), and the tokens per example are measured: a seeded sample of each
source's draws is rendered and tokenized as the training pipeline does it (same encoding, tokenizer and
length limits). Evaluation items are the eval split's instances (capped by `max_per_task`) x shot
settings, plus, with `eval.every_steps`, the validation suite's items x validations (one every
`every_steps` optimizer steps and one after the last). Without a built corpus here, `estimate.without_corpus` supplies examples and tokens per
example. Either way the spec's `estimate:` block supplies throughput only:

    seconds = startup_s + train tokens / (tokens/s of one GPU, or of one CPU worker, x devices)
              + eval items / eval_items_per_s

Training tokens are the trial's own: optimizer steps x rows per step x tokens per row when it sets
`train.max_steps`, else the stream's tokens x `train.epochs`; a merge trial trains on none.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from imlsweep.errors import UserError
from imlsweep.eval.config import EvalConfig
from imlsweep.sweep.spec import SweepSpec
from imlsweep.train.config import TrialConfig

SAMPLED_DRAWS = 16  # distinct draws of each source rendered and tokenized for its mean length
CHARS_PER_TOKEN = 4  # only when the trial's tokenizer cannot be loaded here (a hub tokenizer, offline)


@dataclass(frozen=True)
class TrialEstimate:
    examples: float  # examples trained on, all epochs
    tokens: float  # tokens trained on, all epochs
    eval_items: float
    seconds: float


@dataclass(frozen=True)
class StreamSize:
    """One pass over a mixture's stream."""

    examples: float
    tokens: float


class Estimator:
    """Estimates for the trials of one spec; `corpus` is a built `Corpus`, or None (spec figures).
    Trials sharing a mixture, tokenizer and model kind share one measurement."""

    def __init__(self, spec: SweepSpec, corpus: Any = None):
        self.spec = spec
        self.corpus = corpus
        self._streams: dict[str, StreamSize] = {}
        self.unmeasured: set[str] = set()  # why a mixture fell back to the spec's figures (a file not here)

    @property
    def from_corpus(self) -> bool:
        return self.corpus is not None

    def trial(self, config: TrialConfig) -> TrialEstimate:
        if config.merge is not None:  # no training: merging is reading and writing weights, in startup_s
            items = self.eval_items(config, steps=0)
            return TrialEstimate(examples=0.0, tokens=0.0, eval_items=items, seconds=self.seconds(0.0, items))
        stream = self.stream(config)
        train = config.train
        mean_example = stream.tokens / max(stream.examples, 1.0)
        # decoder-only rows are packed full, packed seq2seq rows about as full as their source row
        # (targets are short); an unpacked seq2seq row is one example
        mixture = config.mixture
        per_row = (mixture.max_length if self.model_kind(config) == "causal" else
                   mixture.max_source_length if mixture.pack_seq2seq else mean_example)
        if train.max_steps is not None:
            tokens = float(train.max_steps) * train.rows_per_step * per_row
            examples = tokens / max(mean_example, 1.0)
        else:
            epochs = train.epochs or 1
            examples, tokens = stream.examples * epochs, stream.tokens * epochs
        items = self.eval_items(config, steps=math.ceil(tokens / (train.rows_per_step * max(per_row, 1.0))))
        return TrialEstimate(examples=examples, tokens=tokens, eval_items=items,
                             seconds=self.seconds(tokens, items))

    def seconds(self, tokens: float, eval_items: float) -> float:
        estimate, resources = self.spec.estimate, self.spec.resources
        if resources.gpus_per_worker:
            rate = estimate.gpu_tokens_per_s * resources.workers * resources.gpus_per_worker
        else:
            rate = estimate.cpu_tokens_per_s * resources.workers
        return estimate.startup_s + tokens / rate + eval_items / estimate.eval_items_per_s

    def stream(self, config: TrialConfig) -> StreamSize:
        key = json.dumps([config.mixture.model_dump(mode="json"), config.model.tokenizer_name,
                          self.model_kind(config)], sort_keys=True)
        if key not in self._streams:
            self._streams[key] = self.spec_stream(config)
            if self.from_corpus:
                try:
                    self._streams[key] = self.measured_stream(config)
                except UserError as error:  # what the checks list as not on this machine
                    self.unmeasured.add(str(error))
        return self._streams[key]

    def spec_stream(self, config: TrialConfig) -> StreamSize:
        figures = self.spec.estimate.without_corpus
        mixture = config.mixture
        if mixture.total_examples is not None:
            examples = float(mixture.total_examples)
        else:
            per_task = (figures.examples_per_task_all if mixture.samples_per_task == "all"
                        else float(mixture.samples_per_task))
            n_tasks = len(mixture.tasks) if isinstance(mixture.tasks, list) else figures.training_tasks
            examples = per_task * n_tasks * mixture.stream_multiple
        return StreamSize(examples=examples, tokens=examples * figures.tokens_per_example)

    def measured_stream(self, config: TrialConfig) -> StreamSize:
        from imlsweep.data.plan import plan_mixture
        from imlsweep.data.seeding import keyed_np_rng
        from imlsweep.data.stream import render_source, source_items
        from imlsweep.data.tokenization import PromptTokenizer

        mixture = config.mixture
        plan = plan_mixture(mixture, self.corpus.manifest)
        tokenizer = self.tokenizer(config)
        tokens = 0.0
        for item in source_items(plan, mixture):
            source = plan.sources[item["source"]]
            distinct = np.unique(item["positions"])
            rng = keyed_np_rng(mixture.seed, "estimate", source.source_id)
            sample = rng.choice(distinct, size=min(SAMPLED_DRAWS, len(distinct)), replace=False)
            encoder = None if tokenizer is None else PromptTokenizer(tokenizer)
            prompts = [prompt for _, prompt in render_source(source, sample, mixture, str(self.corpus.dir), encoder)]
            lengths = self.example_lengths(config, prompts, encoder)
            tokens += float(np.mean(lengths)) * len(item["positions"])
        return StreamSize(examples=float(plan.total_examples), tokens=tokens)

    def example_lengths(self, config: TrialConfig, prompts: list, encoder: Any) -> np.ndarray:
        """Tokens each example trains on: the pipeline's own columns (EOS, length limits, truncation)."""
        import pyarrow.compute as pc

        from imlsweep.data.pipeline import causal_columns, seq2seq_columns

        if encoder is None:
            eos = 0
            sources = [[eos] * (len(p.source) // CHARS_PER_TOKEN) for p in prompts]
            targets = [[eos] * (len(p.target) // CHARS_PER_TOKEN) for p in prompts]
        else:
            eos = encoder.tokenizer.eos_token_id
            sources, targets = encoder.encode(prompts)
        if self.model_kind(config) == "seq2seq":
            columns = seq2seq_columns(sources, targets, eos, config.mixture)
            return (pc.list_value_length(columns["input_ids"]).to_numpy()
                    + pc.list_value_length(columns["labels"]).to_numpy())
        columns = causal_columns(sources, targets, eos, config.mixture, loss_on_source=False)
        return pc.list_value_length(columns["input_ids"]).to_numpy()

    def tokenizer(self, config: TrialConfig) -> Any:
        from imlsweep.data.tokenizer import cached_tokenizer

        try:
            return cached_tokenizer(config.model.tokenizer_name)
        except UserError:
            return None

    def model_kind(self, config: TrialConfig) -> str:
        return model_kind_of(config.model.name)

    def eval_items(self, config: TrialConfig, steps: int) -> float:
        """The eval suite's items, and those of every validation over `steps` optimizer steps."""
        evaluation = config.eval
        if evaluation is None:
            return 0.0
        items = self.suite_items(evaluation)
        if evaluation.every_steps is not None:
            validations = -(-steps // evaluation.every_steps)  # every N steps, and after the last
            items += validations * self.suite_items(evaluation.validation_suite())
        return items

    def suite_items(self, evaluation: EvalConfig) -> float:
        cap = evaluation.max_per_task
        if self.from_corpus:
            from imlsweep.eval.trial import default_eval_tasks

            manifest = self.corpus.manifest
            tasks = evaluation.tasks if evaluation.tasks is not None else default_eval_tasks(self.corpus,
                                                                                             evaluation.split)
            sizes = manifest.loc[manifest["task_id"].isin(set(tasks)), f"n_{evaluation.split}"]
            per_shot = float(sizes.clip(upper=cap).sum() if cap is not None else sizes.sum())
        else:
            tasks = evaluation.tasks or []
            per_shot = float(len(tasks) * (cap or 0))
        return per_shot * len(evaluation.shots)


@lru_cache(maxsize=64)
def model_kind_of(name: str) -> str:
    """causal or seq2seq, without the network: a tiny model's or a local folder's config, a cached hub
    config, else the name (t5, t0, tk-instruct are seq2seq)."""
    from imlsweep.train.model import ModelConfig, model_config, model_kind

    model = ModelConfig(name=name)
    if model.is_tiny or (Path(name) / "config.json").is_file():
        return model_kind(model_config(model))
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid hub id: the checks say so
        cached = None
    if isinstance(cached, str):
        return "seq2seq" if json.loads(Path(cached).read_text()).get("is_encoder_decoder") else "causal"
    return "seq2seq" if re.search(r"t5|t0|tk-instruct", name.lower()) else "causal"
