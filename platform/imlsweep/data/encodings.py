"""Named prompt encodings: a corpus row (plus its task's demonstrations) -> (source, target).

- `superni_def_pos`: Tk-Instruct's collator, character for character (definition, k positive and
  negative examples with optional explanations, then the example; "." added where a field does not end
  in punctuation; a demonstration is left out when it would push the source past max_source_length).
- `no_instruction`: the input alone -> the output (the sample-efficiency baselines).
- `bipartite`: OPT-IML's format: instructions (+ input) as source, label as target; a delimiter drawn
  per example with the seed is inserted when the source does not end with ":". Instance-level rows
  (PromptSource, FLAN) keep their own templated text.

A `Prompt` keeps the part shared by all examples of a task that draw the same demonstrations apart from
the example's own part, so tokenization can encode the shared part once per task.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from imlsweep.config import StrictModel
from imlsweep.data.seeding import keyed_rng

Row = Mapping[str, Any]
CountTokens = Callable[[Sequence[str]], int]  # tokens of the concatenated pieces
EncodingName = Literal["superni_def_pos", "no_instruction", "bipartite"]
SECTION_END = "\n\n"  # superni_def_pos ends its definition and every demonstration with it
OPT_IML_DELIMITERS = ["\nAnswer:", "Answer:", "\nA:", "A:", "\nOutput:", "Output:", "\nanswer:", "\noutput:"]


class EncodingConfig(StrictModel):
    name: EncodingName = "superni_def_pos"
    num_pos_examples: int = Field(default=2, ge=0, description="superni_def_pos: the task's positive examples shown")
    num_neg_examples: int = Field(default=0, ge=0, description="superni_def_pos: the task's negative examples shown")
    add_explanation: bool = Field(default=False, description="superni_def_pos: explanations of shown examples")
    add_definition: bool = Field(default=True, description="superni_def_pos and bipartite: the task definition")
    delimiters: list[str] = Field(default_factory=lambda: list(OPT_IML_DELIMITERS), min_length=1,
                                  description="bipartite: drawn per example when the source does not end with ':'")


@dataclass(frozen=True)
class Prompt:
    shared: str  # identical for every example of the task with the same demonstrations
    own: str
    target: str

    @property
    def source(self) -> str:
        return self.shared + self.own


def with_period(text: str) -> str:
    """Tk-Instruct's rule: add "." unless the text already ends in punctuation."""
    return text if text and text[-1] in string.punctuation else text + "."


def first_definition(definition: str | Sequence[str] | None) -> str:
    if definition is None:
        return ""
    if isinstance(definition, str):
        return definition
    return definition[0] if definition else ""


def superni_definition(definition: str) -> str:
    return with_period("Definition: " + definition.strip()) + SECTION_END if definition.strip() else ""


def superni_demonstration(example: Row, kind: str, number: int, add_explanation: bool) -> str:
    text = with_period(f" {kind} Example {number} -\nInput: {example['input'].strip()}") + "\n"
    text = with_period(text + f" Output: {example['output'].strip()}") + "\n"
    if add_explanation and example.get("explanation"):
        text = with_period(text + f" Explanation: {example['explanation'].strip()}") + "\n"
    return text + "\n"


def superni_task_input(text: str) -> str:
    return with_period(f"Now complete the following example -\nInput: {text.strip()}") + "\nOutput: "


def fit_demonstrations(head: str, candidates: Sequence[str], already: Sequence[str], task_input: str,
                       count_tokens: CountTokens | None, max_source_length: int | None) -> list[str]:
    """Tk-Instruct's greedy fit: keep demonstrations while the source stays within max_source_length.
    (Its check joins the kept ones with " ", unlike the final source; kept as is.)"""
    kept: list[str] = []
    for candidate in candidates:
        if count_tokens is not None and max_source_length is not None:
            joined = [piece for i, text in enumerate([*already, *kept]) for piece in ([" ", text] if i else [text])]
            if count_tokens([head, *joined, candidate, task_input]) > max_source_length:
                break
        kept.append(candidate)
    return kept


def superni_def_pos(row: Row, target: str, demonstrations: Sequence[Row], config: EncodingConfig,
                    count_tokens: CountTokens | None, max_source_length: int | None) -> Prompt:
    definition = superni_definition(first_definition(row.get("definition"))) if config.add_definition else ""
    positives = list(row.get("positive_examples") or [])[: config.num_pos_examples] + [
        {"input": demo["input"], "output": demo["outputs"][0]} for demo in demonstrations]
    negatives = list(row.get("negative_examples") or [])[: config.num_neg_examples]
    pos_texts = [superni_demonstration(e, "Positive", i + 1, config.add_explanation) for i, e in enumerate(positives)]
    neg_texts = [superni_demonstration(e, "Negative", i + 1, config.add_explanation) for i, e in enumerate(negatives)]
    task_input = superni_task_input(row["input"])
    kept_pos = fit_demonstrations(definition, pos_texts, [], task_input, count_tokens, max_source_length)
    kept_neg = fit_demonstrations(definition, neg_texts, kept_pos, task_input, count_tokens, max_source_length)
    return Prompt(shared=definition + "".join(kept_pos) + "".join(kept_neg), own=task_input, target=target)


def counted_parts(row: Row, config: EncodingConfig) -> list[str]:
    """The per-example texts the encoding's length rule counts, to tokenize a task's in one batch: the
    example follows a section, whose trailing whitespace goes with it (see tokenization.segments)."""
    return [SECTION_END + superni_task_input(row["input"])] if config.name == "superni_def_pos" else []


def draw_delimiter(config: EncodingConfig, seed: int, row: Row) -> str:
    return keyed_rng(seed, "delimiter", row["task_id"], row["example_id"]).choice(config.delimiters)


def with_delimiter(source: str, config: EncodingConfig, seed: int, row: Row) -> str:
    """OPT-IML inserts a delimiter only where the instructions do not already end with ":"."""
    return source if source.rstrip().endswith(":") else source + draw_delimiter(config, seed, row)


def is_instance_level(row: Row) -> bool:
    return row.get("instruction_type") == "instance"


def bipartite(row: Row, target: str, demonstrations: Sequence[Row], config: EncodingConfig, seed: int,
              separator: str) -> Prompt:
    """Task-level rows: instruction, demonstrations, then the example. Instance-level rows carry their
    instruction in their own templated text, so the demonstrations (full prompts) come before it."""
    demos = "".join(
        with_delimiter(d["input"].strip(), config, seed, d) + " " + d["outputs"][0].strip() + separator
        for d in demonstrations)
    instruction = first_definition(row.get("definition")).strip() if config.add_definition else ""
    shared = demos if is_instance_level(row) or not instruction else instruction + "\n\n" + demos
    own = row["input"].strip()
    own = with_delimiter(shared + own, config, seed, row)[len(shared):]
    return Prompt(shared=shared, own=own, target=prompt_target(target, config))


def no_instruction(row: Row, target: str, demonstrations: Sequence[Row], separator: str) -> Prompt:
    shared = "".join(f"{d['input'].strip()}\n{d['outputs'][0].strip()}{separator}" for d in demonstrations)
    return Prompt(shared=shared, own=row["input"].strip(), target=target)


def prompt_target(reference: str, config: EncodingConfig) -> str:
    """A reference as the encoding trains on it (bipartite: after one space)."""
    return " " + reference.strip() if config.name == "bipartite" else reference


def encode_prompt(row: Row, target: str, demonstrations: Sequence[Row], config: EncodingConfig, *, seed: int,
                  separator: str = "\n\n", count_tokens: CountTokens | None = None,
                  max_source_length: int | None = None) -> Prompt:
    """Render one row with the named encoding. `target` is the chosen reference."""
    if config.name == "superni_def_pos":
        return superni_def_pos(row, target, demonstrations, config, count_tokens, max_source_length)
    if config.name == "bipartite":
        return bipartite(row, target, demonstrations, config, seed, separator)
    return no_instruction(row, target, demonstrations, separator)
