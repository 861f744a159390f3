"""Local files of a benchmark copy: rows of JSON Lines / JSON / Parquet files, TSV lines, and the split
files of a local dataset copy (a `datasets` `save_to_disk` folder or the hub's file layout).

Every reader is strict: undecodable bytes, malformed JSON or an unreadable Parquet file become a
`TaskProblem` naming the file and the line.
"""

from __future__ import annotations

import json
from pathlib import Path

from imlsweep.corpus.adapters.fields import type_name
from imlsweep.corpus.task import TaskProblem

ROW_SUFFIXES = (".jsonl", ".json", ".parquet")


def decode_line(data: bytes, number: int, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TaskProblem(f"line {number}", f"undecodable bytes at offset {error.start} (not UTF-8)",
                          str(path)) from None


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(decode_line(line, number, path))
        except json.JSONDecodeError as error:
            raise TaskProblem(f"line {number}", f"malformed JSON: {error.msg} at column {error.colno}",
                              str(path)) from None
        if not isinstance(row, dict):
            raise TaskProblem(f"line {number}", f"expected a JSON object, got {type_name(row)}", str(path))
        rows.append(row)
    return rows


def read_json_list(path: Path) -> list[dict]:
    """A JSON file holding one list of objects."""
    try:
        data = json.loads(decode_line(path.read_bytes(), 1, path))
    except json.JSONDecodeError as error:
        raise TaskProblem("<file>", f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}",
                          str(path)) from None
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise TaskProblem("<file>", "expected a JSON list of objects", str(path))
    return data


def read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise TaskProblem("<file>", f"not a readable Parquet file: {error}", str(path)) from None


def read_rows(path: Path) -> list[dict]:
    """The rows of a .jsonl (one object a line), .json (a list of objects) or .parquet file."""
    readers = {".jsonl": read_jsonl, ".json": read_json_list, ".parquet": read_parquet}
    if path.suffix not in readers:
        raise TaskProblem("<file>", f"unsupported file type {path.suffix!r} (expected {', '.join(ROW_SUFFIXES)})",
                          str(path))
    return readers[path.suffix](path)


def read_tsv(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, columns) of each non-empty line of a tab-separated file without a header."""
    lines = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        text = decode_line(line, number, path).rstrip("\r")
        if text.strip():
            lines.append((number, text.split("\t")))
    return lines


def split_files(folder: Path, split: str) -> list[Path]:
    """A split's files in a folder, in name order: `<split>.jsonl|.json|.parquet`, or the hub's shards
    `<split>-00000-of-00002.parquet` ..."""
    files = [folder / f"{split}{suffix}" for suffix in ROW_SUFFIXES if (folder / f"{split}{suffix}").is_file()]
    files += sorted(path for path in folder.glob(f"{split}-*") if path.suffix in ROW_SUFFIXES)
    return files


def saved_split_rows(folder: Path, split: str) -> list[dict]:
    import datasets

    try:
        saved = datasets.load_from_disk(str(folder))
    except Exception as error:  # datasets raises several types for a damaged folder
        raise TaskProblem("<folder>", f"not a readable save_to_disk folder: {error}", str(folder)) from None
    if isinstance(saved, datasets.DatasetDict):
        if split not in saved:
            raise TaskProblem(f"splits.{split}", f"no {split!r} split (has: {', '.join(saved)})", str(folder))
        saved = saved[split]
    return list(saved)


def dataset_split_rows(folder: Path, split: str) -> tuple[str, list[dict]]:
    """(file named in errors, rows) of one split of a local dataset copy: a `save_to_disk` folder (of a
    DatasetDict, or `<folder>/<split>/` of one Dataset) or the split's files (`split_files`)."""
    if (folder / "dataset_dict.json").is_file():
        return str(folder), saved_split_rows(folder, split)
    if (folder / split / "state.json").is_file():  # a Dataset saved as one split
        return str(folder / split), saved_split_rows(folder / split, split)
    if not folder.is_dir():
        raise TaskProblem(f"splits.{split}", "no such folder (the local copy of the dataset)", str(folder))
    files = split_files(folder, split)
    if not files:
        raise TaskProblem(f"splits.{split}", f"no {split}.jsonl, {split}.parquet, {split}-*.parquet or "
                          f"save_to_disk split {split!r} here", str(folder))
    rows = []
    for path in files:
        rows.extend(read_rows(path))
    return str(files[0]) if len(files) == 1 else str(folder), rows
