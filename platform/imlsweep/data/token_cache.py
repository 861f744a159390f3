"""The token cache: a task's examples rendered and tokenized once, read by every later trial and sweep.

An entry holds one task's examples as one rendering makes them: per pool position, the source ids and
the ids of every reference (not yet cut to a length, without EOS). Its key is a digest of exactly what
the ids depend on: the task file's content, the rendering settings (encoding, demonstrations, split,
max_source_length, which superni_def_pos's length rule reads) and the tokenizer's content. What a
trial's seed draws per example, which reference is the target, is drawn when the entry is read, so two
seeds share the entry. The seed enters the key only where the rendered source itself depends on it:
demonstrations (drawn per task) and bipartite's delimiter (drawn per example).

An entry holds the positions trials have drawn so far (and those the segment paired with the reader
draws: `cached_task_tokens`' `also`); a trial that draws more tokenizes only those and
writes the entry back with them, merged with what the file holds at that moment (so a concurrent
writer's rows are rarely lost, and a lost row is only tokenized again). Entries are written aside and
renamed over (a reader sees a whole entry or none; two writers of one entry leave one whole entry).

A process keeps the entries it read or wrote last, parsed (`RecentEntries`, up to RECENT_BYTES of
entry files): a local entry whose file is unchanged is not read again, so the next trial whose segments
land on the same Ray workers reads the cache from memory. An entry's ids for a position never change, so a
kept copy can only lack rows a later writer added (and those are then read again).

An entry file is an uncompressed Arrow IPC file behind a 20-byte header (magic, CRC-32 and length of
the IPC bytes): a segment reads a few thousand entries, and this opens zero-copy in about a tenth of
the time a Parquet file takes. The CRC and the key in the schema's metadata make a truncated, damaged
or foreign file read as missing, and it is rebuilt.

Layout: <location>/<key[:2]>/<key>.arrow; the location is `token_cache` of the trial config (a folder
or an s3:// / gs:// URI), by default the folder beside the corpus (<corpus>.token-cache).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import struct
import sys
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc

from imlsweep import storage
from imlsweep.errors import UserError

if TYPE_CHECKING:
    from imlsweep.data.mixture import MixtureConfig
    from imlsweep.data.plan import SourcePlan

FORMAT = 2
LOCATION_SUFFIX = ".token-cache"
ENTRY_SUFFIX = ".arrow"
HEADER = struct.Struct("<8sIQ")  # magic, CRC-32 of the IPC bytes, their length
MAGIC = b"IMLTOKC2"
TEMP_SUFFIX = ".tmp"  # storage.write_bytes' file written aside, before its rename
STALE_TEMP_S = 3600  # a file written aside this long ago belongs to a writer that was killed
METADATA_KEY = b"imlsweep.token_cache"
# Entry bytes a process keeps parsed (`RecentEntries`): the entries of a 60k-example stream on the
# 2000-task corpus (about 100 MB a segment's worker) fit; a longer stream's keep this bound.
RECENT_BYTES = 128 * 2**20
SCHEMA = pa.schema([("position", pa.int64()), ("example_id", pa.string()),
                    ("source_ids", pa.large_list(pa.int32())), ("reference_ids", pa.list_(pa.list_(pa.int32())))])


def default_location(corpus_dir: str) -> str:
    return storage.absolute(str(corpus_dir)).rstrip("/") + LOCATION_SUFFIX


def cache_location(token_cache: str | None, corpus_dir: str) -> str:
    return storage.absolute(token_cache) if token_cache else default_location(corpus_dir)


def check_writable(location: str) -> None:
    """Fail, naming the location, when an entry could not be written there."""
    probe = storage.join(location, f".probe-{uuid.uuid4().hex}")
    try:
        storage.write_bytes(probe, b"")
        storage.delete(probe)
    except OSError as error:
        raise UserError(f"token cache {location}: cannot be written ({error}); set `token_cache` to a writable "
                        "folder or URI") from None


def digest(*parts: Any) -> str:
    return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode("utf-8"), digest_size=16).hexdigest()


@lru_cache(maxsize=8)
def tokenizer_identity(tokenizer_name: str) -> str:
    """A digest of the tokenizer's content (vocabulary, merges, normalisation, special tokens): the same
    tokenizer loaded from anywhere has one identity, and a changed file a new one."""
    from imlsweep.data.tokenizer import cached_tokenizer

    tokenizer = cached_tokenizer(tokenizer_name)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    content = backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items())
    return digest(type(tokenizer).__name__, content, tokenizer.eos_token_id, tokenizer.pad_token_id)


@lru_cache(maxsize=4096)
def file_digest(path: str, size: int, modified_ns: int) -> str:
    """The content digest of a file (size and modification time only key this process's memo)."""
    hasher = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            hasher.update(chunk)
    return hasher.hexdigest()


def task_digest(corpus_dir: str, task_id: str) -> str:
    path = task_path(corpus_dir, task_id)
    status = os.stat(path)
    return file_digest(path, status.st_size, status.st_mtime_ns)


@lru_cache(maxsize=2**16)
def task_path(corpus_dir: str, task_id: str) -> str:
    """Memoized: a segment asks for thousands of tasks' paths (the corpus is opened once per process too)."""
    from imlsweep.data.stream import open_corpus

    return str(open_corpus(corpus_dir).task_path(task_id))


def rendering_settings(mixture: MixtureConfig) -> dict[str, Any]:
    """Every mixture setting a task's rendered, tokenized sources and references depend on."""
    seeded = mixture.demonstrations.shots > 0 or mixture.encoding.name == "bipartite"
    return {"encoding": mixture.encoding.model_dump(mode="json"),
            "demonstrations": mixture.demonstrations.model_dump(mode="json"),
            "train_split": mixture.train_split, "max_source_length": mixture.max_source_length,
            "seed": mixture.seed if seeded else None}


def settings_key(mixture: MixtureConfig, tokenizer_name: str) -> str:
    """A digest of what every entry of a trial shares: the format, rendering settings and tokenizer."""
    return digest(FORMAT, rendering_settings(mixture), tokenizer_identity(tokenizer_name))


@lru_cache(maxsize=2**16)
def entry_key(task_id: str, task_content: str, settings: str) -> str:
    """An entry's key: its task, the task file's content digest and the `settings_key`."""
    return digest(task_id, task_content, settings)


def entry_uri(location: str, key: str) -> str:
    return storage.join(location, key[:2], key + ENTRY_SUFFIX)


def source_key(source_id: str, corpus_dir: str, settings: str) -> str:
    return entry_key(source_id, task_digest(corpus_dir, source_id), settings)


def entry_bytes(table: pa.Table, metadata: dict[str, Any]) -> bytes:
    sink = pa.BufferOutputStream()
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata)})
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    body = sink.getvalue()
    return HEADER.pack(MAGIC, zlib.crc32(body), body.size) + body.to_pybytes()


def parse_entry(data: bytes) -> tuple[pa.Table, dict[str, Any]]:
    """An entry file's table and metadata; ValueError when it is truncated, damaged or not an entry."""
    if len(data) < HEADER.size:
        raise ValueError("shorter than its header")
    magic, crc, length = HEADER.unpack_from(data)
    body = memoryview(data)[HEADER.size:]
    if magic != MAGIC or length != len(body) or zlib.crc32(body) != crc:
        raise ValueError("its header, length or checksum does not match")
    table = pa.ipc.open_file(pa.py_buffer(body)).read_all()
    return table, json.loads(table.schema.metadata[METADATA_KEY])


def entry_table(data: bytes, key: str) -> pa.Table:
    """The table of an entry file's bytes; ValueError when it is truncated, damaged or not the entry of `key`."""
    table, metadata = parse_entry(data)
    if metadata["key"] != key or metadata["rows"] != table.num_rows or not table.schema.equals(SCHEMA):
        raise ValueError("not the entry of its key")
    return table


def read_entry(uri: str, key: str) -> pa.Table | None:
    """The entry's table, or None when it is missing, truncated, damaged or not the entry of `key`."""
    tokens = read_tokens(uri, key)
    return tokens.table if tokens is not None else None


def read_tokens(uri: str, key: str) -> TaskTokens | None:
    """The entry as flat arrays, or None when it is missing, truncated, damaged or not the entry of `key`;
    from this process's `RECENT` entries when its file is unchanged since it was read."""
    identity = storage.file_identity(uri)
    recent = RECENT.get(uri, identity) if identity is not None else None
    if recent is not None:
        return recent
    data = storage.read_bytes(uri)
    if data is None:
        return None
    try:
        tokens = TaskTokens.of(entry_table(data, key))
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError) as error:
        print(f"token cache: {uri} is damaged ({error}); rebuilding it", file=sys.stderr)
        return None
    if identity is not None and storage.file_identity(uri) == identity:  # the file read is the one stat saw
        RECENT.put(uri, identity, tokens, len(data))
    return tokens


class RecentEntries:
    """The entries this process read or wrote last, as flat arrays, up to `limit` bytes of entry files
    (the least recently used go first). A local entry whose file is unchanged since (`storage.file_identity`: a
    writer renames a new file over it) is not read again: Ray runs the segments of consecutive trials in
    the same worker processes, and the trials of a sweep draw from the same entries."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held: OrderedDict[str, tuple[tuple[int, int, int], TaskTokens, int]] = OrderedDict()
        self.size = 0

    def get(self, uri: str, identity: tuple[int, int, int]) -> TaskTokens | None:
        held = self.held.get(uri)
        if held is None or held[0] != identity:
            return None
        self.held.move_to_end(uri)
        return held[1]

    def put(self, uri: str, identity: tuple[int, int, int], tokens: TaskTokens, size: int) -> None:
        replaced = self.held.pop(uri, None)
        self.size -= replaced[2] if replaced is not None else 0
        if size > self.limit:
            return
        self.held[uri] = (identity, tokens, size)
        self.size += size
        while self.size > self.limit:
            self.size -= self.held.popitem(last=False)[1][2]


RECENT = RecentEntries(RECENT_BYTES)  # this process's: each Ray worker keeps its own


def write_entry(uri: str, key: str, task_id: str, table: pa.Table) -> None:
    metadata = {"key": key, "task_id": task_id, "rows": table.num_rows, "format": FORMAT}
    data = entry_bytes(table, metadata)
    identity = storage.write_bytes(uri, data)
    if identity is not None:  # kept as a read would keep it: the next segment on this worker reads it from memory
        RECENT.put(uri, identity, TaskTokens.of(table), len(data))


def add_rows(uri: str, key: str, task_id: str, new: pa.Table) -> None:
    """Write the entry back with `new` rows, merged with what the file holds now (another writer's rows
    since this one read it are kept)."""
    write_entry(uri, key, task_id, merged(read_entry(uri, key), new))


def merged(entry: pa.Table | None, new: pa.Table) -> pa.Table:
    """An entry's rows and `new` ones, by position (a position in both has the same ids either way: the
    new row is kept), in one take."""
    table = new if entry is None else pa.concat_tables([entry.replace_schema_metadata(None), new])
    positions = table.column("position").to_numpy()
    if np.all(positions[1:] > positions[:-1]):
        return table
    _, last = np.unique(positions[::-1], return_index=True)  # each position's last row, by position
    return table.take(len(positions) - 1 - last)


def held_mask(held: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Which of `wanted` the sorted positions `held` contain."""
    if not len(held):
        return np.zeros(len(wanted), dtype=bool)
    return held[np.minimum(np.searchsorted(held, wanted), len(held) - 1)] == wanted


def tokenize_rows(source: SourcePlan, positions: Sequence[int], mixture: MixtureConfig, corpus_dir: str,
                  tokenizer_name: str) -> pa.Table:
    """An entry's rows for pool positions `positions` (ascending): rendered, tokenized."""
    from imlsweep.data.encodings import prompt_target
    from imlsweep.data.stream import render_task_rows
    from imlsweep.data.tokenization import PromptTokenizer
    from imlsweep.data.tokenizer import cached_tokenizer

    encoder = PromptTokenizer(cached_tokenizer(tokenizer_name))
    rendered = render_task_rows(source, list(positions), mixture, corpus_dir, encoder)
    sources = encoder.encode_sources([prompt for _, prompt in rendered])
    counts = [len(row["outputs"]) for row, _ in rendered]
    references = encoder.ids([prompt_target(text, mixture.encoding) for row, _ in rendered for text in row["outputs"]])
    bounds = np.cumsum([0, *counts])
    return pa.table({"position": pa.array(positions, type=pa.int64()),
                     "example_id": [row["example_id"] for row, _ in rendered],
                     "source_ids": int32_lists(sources),
                     "reference_ids": pa.array([references[a:b] for a, b in zip(bounds[:-1], bounds[1:])],
                                               type=pa.list_(pa.list_(pa.int32())))}, schema=SCHEMA)


def int32_lists(lists: Sequence[Sequence[int]]) -> pa.LargeListArray:
    """Lists of Python ints as an Arrow array, flattened in C (half the time of `pa.array` on them)."""
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int32, count=int(offsets[-1]))
    return pa.LargeListArray.from_arrays(offsets, values)


@dataclass(frozen=True)
class TaskTokens:
    """An entry as flat arrays: row i's source is source_values[source_offsets[i]:source_offsets[i + 1]];
    its references are numbers reference_starts[i] .. reference_starts[i + 1] - 1 of reference_offsets.
    The arrays are views of `table`'s."""

    table: pa.Table
    positions: np.ndarray
    example_ids: pa.Array
    source_values: np.ndarray
    source_offsets: np.ndarray
    reference_starts: np.ndarray
    reference_values: np.ndarray
    reference_offsets: np.ndarray

    @classmethod
    def of(cls, table: pa.Table) -> TaskTokens:
        sources, references = (one_chunk(table.column(name)) for name in ("source_ids", "reference_ids"))
        flat = references.values  # an entry's list arrays start at offset 0: values are the flat lists
        return cls(table=table, positions=table.column("position").to_numpy(), example_ids=one_chunk(table.column("example_id")),
                   source_values=sources.values.to_numpy(), source_offsets=sources.offsets.to_numpy(),
                   reference_starts=references.offsets.to_numpy(), reference_values=flat.values.to_numpy(),
                   reference_offsets=flat.offsets.to_numpy())

    def draws(self, positions: np.ndarray, seed: int, task_id: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(source ids, target ids) of each draw, the target being the seed's choice among its references:
        views of the entry's arrays (the segment copies its draws into one array at once)."""
        from imlsweep.data.render import target_index

        rows = np.searchsorted(self.positions, positions)
        chosen = self.reference_starts[rows]  # each draw's first reference, then the seed's pick where it has more
        counts = self.reference_starts[rows + 1] - chosen
        for i in np.flatnonzero(counts > 1).tolist():
            chosen[i] += target_index(int(counts[i]), seed, task_id, self.example_ids[int(rows[i])].as_py())
        return (slices(self.source_values, self.source_offsets[rows].tolist(), self.source_offsets[rows + 1].tolist()),
                slices(self.reference_values, self.reference_offsets[chosen].tolist(),
                       self.reference_offsets[chosen + 1].tolist()))


def one_chunk(column: pa.ChunkedArray) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def slices(values: np.ndarray, starts: list[int], ends: list[int]) -> list[np.ndarray]:
    return [values[start:end] for start, end in zip(starts, ends)]


def cached_task_tokens(source: SourcePlan, positions: np.ndarray, mixture: MixtureConfig, corpus_dir: str,
                       tokenizer_name: str, location: str, also: np.ndarray | None = None,
                       settings: str | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(source ids, target ids) of each draw of a corpus task: read from its entry, the positions the
    entry lacks tokenized and added to it. When the task has to be read anyway, the positions `also`
    lacks are tokenized with them (another segment's draws: it will find them held). `settings`: the
    trial's `settings_key`, when the caller reads many tasks."""
    key = source_key(source.source_id, corpus_dir, settings or settings_key(mixture, tokenizer_name))
    uri = entry_uri(location, key)
    tokens = read_tokens(uri, key)
    positions = np.asarray(positions)
    held = tokens.positions if tokens is not None else np.zeros(0, np.int64)
    if tokens is not None and held_mask(held, positions).all():  # a cached task: every draw from its entry
        return tokens.draws(positions, mixture.seed, source.source_id)
    wanted = np.unique(positions)
    missing = wanted[~held_mask(held, wanted)]
    if not len(missing):  # no draws
        return [], []
    if also is not None and len(also):
        ahead = np.unique(also)
        missing = np.union1d(missing, ahead[~held_mask(held, ahead)])
    new = tokenize_rows(source, missing.tolist(), mixture, corpus_dir, tokenizer_name)
    add_rows(uri, key, source.source_id, new)
    parts = [tokens, TaskTokens.of(new)] if tokens is not None else [TaskTokens.of(new)]
    return draws(parts, positions, mixture.seed, source.source_id)


def draws(parts: list[TaskTokens], positions: np.ndarray, seed: int,
          task_id: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(source ids, target ids) of each draw, each position's from the part (entry or new rows) holding it."""
    sources: list[np.ndarray] = [np.zeros(0, np.int32)] * len(positions)
    targets = list(sources)
    for tokens in parts:
        at = np.flatnonzero(held_mask(tokens.positions, positions))
        for i, source, target in zip(at, *tokens.draws(positions[at], seed, task_id)):
            sources[i], targets[i] = source, target
    return sources, targets


@dataclass(frozen=True)
class EntryFile:
    uri: str
    key: str
    size: int
    modified: float  # seconds since the epoch


def list_entries(location: str) -> tuple[list[EntryFile], list[str]]:
    """The location's entries (least recently written first), and the files written aside that killed
    writers left."""
    import pyarrow.fs as pafs

    filesystem, root = storage.resolve(location)
    infos = filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True, recursive=True))
    entries, temporary = [], []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        uri = storage.join(location, info.path[len(root.rstrip("/")) + 1:])
        if info.base_name.endswith(TEMP_SUFFIX):
            if time.time() - info.mtime.timestamp() > STALE_TEMP_S:
                temporary.append(uri)
        elif info.base_name.endswith(ENTRY_SUFFIX):
            entries.append(EntryFile(uri, info.base_name.removesuffix(ENTRY_SUFFIX), info.size,
                                     info.mtime.timestamp()))
    return sorted(entries, key=lambda e: e.modified), temporary


def entry_summary(entry: EntryFile) -> dict[str, Any]:
    """An entry's key, task, examples and size ({"damaged": true} when unreadable)."""
    summary: dict[str, Any] = {"key": entry.key, "bytes": entry.size, "modified": entry.modified}
    try:
        metadata = parse_entry(storage.read_bytes(entry.uri) or b"")[1]
        summary.update(task_id=metadata["task_id"], examples=metadata["rows"])
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError):
        summary["damaged"] = True
    return summary


def prune(location: str, max_bytes: int | None = None, older_than_s: float | None = None) -> dict[str, Any]:
    """Remove damaged entries and killed writers' files; then entries not written for `older_than_s`;
    then the least recently written until the rest fit in `max_bytes`."""
    entries, temporary = list_entries(location)
    removed = list(temporary)
    kept = []
    now = time.time()
    for entry in entries:
        stale = older_than_s is not None and now - entry.modified > older_than_s
        if stale or entry_summary(entry).get("damaged"):
            removed.append(entry.uri)
        else:
            kept.append(entry)
    total = sum(e.size for e in kept)
    while max_bytes is not None and kept and total > max_bytes:
        oldest = kept.pop(0)
        removed.append(oldest.uri)
        total -= oldest.size
    for uri in removed:
        storage.delete(uri)
    return {"location": location, "removed": len(removed), "kept": len(kept), "bytes": total}


def coverage(trials: Sequence[tuple[MixtureConfig, str, str, str]], bytes_per_example: float) -> dict[str, Any]:
    """How much of the examples that trials (mixture, corpus, tokenizer, cache location) draw from corpus
    tasks the cache holds already, the bytes of the entries they use, and about how many bytes those
    entries will take once the trials have run (`bytes_per_example` until an entry shows its own)."""
    from imlsweep.data.plan import plan_mixture
    from imlsweep.data.stream import is_text_addon, open_corpus, source_items

    needed: dict[tuple[str, str], np.ndarray] = {}
    for mixture, corpus_dir, tokenizer_name, location in trials:
        plan = plan_mixture(mixture, open_corpus(corpus_dir).manifest)
        settings = settings_key(mixture, tokenizer_name)
        for item in source_items(plan, mixture):
            source = plan.sources[item["source"]]
            if not is_text_addon(source):
                entry = (location, source_key(source.source_id, corpus_dir, settings))
                needed[entry] = np.union1d(needed.get(entry, np.zeros(0, np.int64)), item["positions"])
    examples = sum(len(positions) for positions in needed.values())
    cached = held = stored = 0
    for (location, key), positions in needed.items():
        data = storage.read_bytes(entry_uri(location, key))
        entry = read_entry_positions(data, key) if data is not None else None
        if entry is not None:
            cached += int(held_mask(entry, positions).sum())
            held += len(entry)
            stored += len(data)
    per_example = stored / held if held else bytes_per_example
    return {"examples": examples, "cached_examples": cached,
            "cached_fraction": cached / examples if examples else 1.0, "bytes": stored,
            "expected_bytes": int(stored + (examples - cached) * per_example),
            "locations": sorted({location for location, _ in needed})}


def read_entry_positions(data: bytes, key: str) -> np.ndarray | None:
    """The pool positions an entry holds (None when it is not a readable entry of `key`)."""
    try:
        return entry_table(data, key).column("position").to_numpy()
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError):
        return None
