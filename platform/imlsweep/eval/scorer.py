"""The official SuperNI scorer's file formats and grouping, on top of `imlsweep.eval.metrics`.

Predictions JSONL: {"id", "prediction"}. References JSONL: {"id", "references": [...], "task_id"?,
"task_category"?, "track"?} with track "default" or "xlingual". Metrics are the mean over instances
of the per-instance maximum over references, x100, rounded to 4 decimals; per category (lower-cased,
spaces to "_") and per task likewise. A missing prediction is scored as "" and reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from imlsweep.errors import UserError
from imlsweep.eval.metrics import exact_match, rouge_l, rouge_tokens

TRACKS = ("default", "xlingual")


@dataclass(frozen=True)
class Reference:
    id: str
    references: list[str]
    task_id: str | None
    task_category: str | None
    track: str


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; bad JSON names the file and line."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(value, dict):
                raise UserError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}")
            yield number, value


def _string_field(path: Path, number: int, value: dict[str, Any], field: str, required: bool) -> str | None:
    item = value.get(field)
    if item is None and not required:
        return None
    if not isinstance(item, str):
        what = "missing" if field not in value else f"not a string ({type(item).__name__})"
        raise UserError(f"{path}:{number}: id {value.get('id')!r}: field {field!r} is {what}")
    return item


def read_references(path: Path) -> dict[str, Reference]:
    references: dict[str, Reference] = {}
    for number, value in read_jsonl(path):
        instance_id = _string_field(path, number, value, "id", required=True)
        refs = value.get("references")
        if not isinstance(refs, list) or not refs or not all(isinstance(ref, str) for ref in refs):
            raise UserError(f"{path}:{number}: id {instance_id!r}: field 'references' must be a non-empty "
                            f"list of strings, got {refs!r}")
        track = _string_field(path, number, value, "track", required=False) or "default"
        if track not in TRACKS:
            raise UserError(f"{path}:{number}: id {instance_id!r}: field 'track' must be one of {TRACKS}, "
                            f"got {track!r}")
        if instance_id in references:
            raise UserError(f"{path}:{number}: id {instance_id!r} appears twice")
        references[instance_id] = Reference(
            id=instance_id, references=refs, track=track,
            task_id=_string_field(path, number, value, "task_id", required=False),
            task_category=_string_field(path, number, value, "task_category", required=False))
    if not references:
        raise UserError(f"{path}: no references (the file is empty)")
    return references


def read_predictions(path: Path, references: dict[str, Reference]) -> dict[str, str]:
    predictions: dict[str, str] = {}
    for number, value in read_jsonl(path):
        instance_id = _string_field(path, number, value, "id", required=True)
        prediction = _string_field(path, number, value, "prediction", required=True)
        if instance_id not in references:
            raise UserError(f"{path}:{number}: prediction id {instance_id!r} has no reference")
        if instance_id in predictions:
            raise UserError(f"{path}:{number}: prediction id {instance_id!r} appears twice")
        predictions[instance_id] = prediction
    if not predictions:
        raise UserError(f"{path}: no predictions (the file is empty)")
    return predictions


def mean_metrics(rows: Sequence[tuple[float, float]]) -> dict[str, float]:
    """(exact match, ROUGE-L) per instance -> the official x100, 4-decimal means."""
    return {
        "exact_match": round(100.0 * sum(em for em, _ in rows) / len(rows), 4),
        "rougeL": round(100.0 * sum(rl for _, rl in rows) / len(rows), 4),
        "n": len(rows),
    }


def category_key(category: str) -> str:
    return "_".join(category.lower().split())


def grouped_metrics(rows: Sequence[tuple[float, float]], groups: Sequence[str]) -> dict[str, dict[str, float]]:
    by_group: dict[str, list[tuple[float, float]]] = {}
    for row, group in zip(rows, groups):
        by_group.setdefault(group, []).append(row)
    return {group: mean_metrics(group_rows) for group, group_rows in by_group.items()}


def score_track(references: list[Reference], predictions: dict[str, str],
                tokenize: Callable[[str], Sequence[str]]) -> dict[str, Any]:
    rows = []
    for reference in references:
        prediction = predictions.get(reference.id, "")
        rows.append((exact_match(prediction, reference.references),
                     rouge_l(prediction, reference.references, tokenize)))
    result: dict[str, Any] = mean_metrics(rows)
    # Like the official scorer, group only when the first instance carries the field.
    if references[0].task_category is not None:
        result["per_category"] = grouped_metrics(rows, [category_key(ref.task_category or "") for ref in references])
    if references[0].task_id is not None:
        result["per_task"] = grouped_metrics(rows, [ref.task_id or "" for ref in references])
    return result


def gpt2_tokens(tokenizer_name: str) -> Callable[[str], Sequence[str]]:
    """The xlingual track's tokens: GPT-2 BPE tokens with the leading "Ġ" stripped."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
    except (OSError, ValueError) as error:
        raise UserError(f"the xlingual track needs the GPT-2 tokenizer; {tokenizer_name!r} cannot be loaded "
                        f"({error}); pass a local copy with --xlingual-tokenizer") from None
    return lambda text: [token.lstrip("Ġ") for token in tokenizer.tokenize(text)]


def score_files(predictions_path: Path, references_path: Path, xlingual_tokenizer: str = "gpt2") -> dict[str, Any]:
    """Score a predictions file against a references file, per track, category and task."""
    references = read_references(Path(references_path))
    predictions = read_predictions(Path(predictions_path), references)
    tracks: dict[str, Any] = {}
    official: dict[str, float] = {}
    for track in TRACKS:
        track_refs = [ref for ref in references.values() if ref.track == track]
        if not track_refs:
            continue
        tokenize = rouge_tokens if track == "default" else gpt2_tokens(xlingual_tokenizer)
        result = score_track(track_refs, predictions, tokenize)
        result["missing_predictions"] = [ref.id for ref in track_refs if ref.id not in predictions]
        tracks[track] = result
        official.update(official_keys(result, track))
    main = tracks["default"] if "default" in tracks else tracks["xlingual"]
    return {
        "exact_match": main["exact_match"],
        "rougeL": main["rougeL"],
        "n_instances": len(references),
        "missing_predictions": [i for result in tracks.values() for i in result["missing_predictions"]],
        "per_category": {key: _metric_pair(value) for key, value in main.get("per_category", {}).items()},
        "per_task": {key: _metric_pair(value) for key, value in main.get("per_task", {}).items()},
        "tracks": tracks,
        "official": official,
    }


def _metric_pair(metrics: dict[str, float]) -> dict[str, float]:
    return {"exact_match": metrics["exact_match"], "rougeL": metrics["rougeL"]}


def official_keys(result: dict[str, Any], track: str) -> dict[str, float]:
    """The flat keys the official scorer prints: `{metric}_{track}_track`, `{metric}_for_{group}_...`."""
    keys = {f"{metric}_{track}_track": result[metric] for metric in ("exact_match", "rougeL")}
    for grouping in ("per_category", "per_task"):
        for group, metrics in result.get(grouping, {}).items():
            for metric in ("exact_match", "rougeL"):
                keys[f"{metric}_for_{group}_{track}_track"] = metrics[metric]
    return keys
