"""The token cache: entries equal a fresh tokenization, keys change with what the ids depend on, seeded
draws stay per seed, damaged entries are rebuilt, racing writers leave one whole entry."""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pytest

from imlsweep import storage
from imlsweep.data import token_cache
from imlsweep.data.mixture import MixtureConfig
from imlsweep.data.plan import plan_mixture
from imlsweep.data.render import choose_target
from imlsweep.data.stream import open_corpus, render_source, render_task_rows, source_items
from imlsweep.data.tokenization import PromptTokenizer, token_ids
from imlsweep.data.tokenizer import cached_tokenizer
from imlsweep.errors import UserError

MIXTURE = MixtureConfig(eps=30, total_examples=96, demonstrations={"shots": 1}, seed=5)


def task_items(mixture, corpus):
    plan = plan_mixture(mixture, open_corpus(str(corpus)).manifest)
    return [(plan.sources[item["source"]], item["positions"]) for item in source_items(plan, mixture)]


def cached(source, positions, corpus, location, mixture=MIXTURE, tokenizer="tiny"):
    return token_cache.cached_task_tokens(source, positions, mixture, str(corpus), tokenizer, str(location))


def as_lists(ids):
    return [list(map(int, part)) for part in ids]


def entry_files(location):
    return sorted(p for p in location.rglob("*") if p.is_file())


def test_entries_hold_what_a_fresh_tokenization_gives(sample_corpus, tmp_path):
    encoder = PromptTokenizer(cached_tokenizer("tiny"))
    for source, positions in task_items(MIXTURE, sample_corpus)[:3]:
        fresh = encoder.encode([p for _, p in render_source(source, positions, MIXTURE, str(sample_corpus), encoder)])
        cold = cached(source, positions, sample_corpus, tmp_path)
        warm = cached(source, positions, sample_corpus, tmp_path)
        for got in (cold, warm):
            assert as_lists(got[0]) == fresh[0] and as_lists(got[1]) == fresh[1]
    assert len(entry_files(tmp_path)) == 3


def test_an_entry_grows_by_the_positions_a_later_trial_draws(sample_corpus, tmp_path, monkeypatch):
    source, positions = task_items(MIXTURE, sample_corpus)[0]
    cached(source, positions[:2], sample_corpus, tmp_path)
    tokenized = []
    real = token_cache.tokenize_rows
    monkeypatch.setattr(token_cache, "tokenize_rows", lambda s, p, *a: tokenized.append(p) or real(s, p, *a))
    cached(source, positions, sample_corpus, tmp_path)
    cached(source, positions, sample_corpus, tmp_path)
    assert tokenized == [sorted(set(map(int, positions)) - set(map(int, positions[:2])))]


def test_every_part_of_the_key_invalidates(sample_corpus, tmp_path):
    task = task_items(MIXTURE, sample_corpus)[0][0].source_id
    content = token_cache.task_digest(str(sample_corpus), task)
    extended = cached_tokenizer("tiny")
    extended.save_pretrained(tmp_path / "extended")
    extended = cached_tokenizer(str(tmp_path / "extended"))
    extended.add_tokens(["<extra>"])
    extended.save_pretrained(tmp_path / "extended")
    cached_tokenizer.cache_clear()

    def key(changes=None, task_content=content, tokenizer="tiny"):
        mixture = MixtureConfig(**{**MIXTURE.model_dump(), **(changes or {})})
        return token_cache.entry_key(task, task_content, token_cache.settings_key(mixture, tokenizer))

    changed = [key(task_content="0" * 32), key({"encoding": {"num_pos_examples": 1}}),
               key({"encoding": {"name": "no_instruction"}}), key({"demonstrations": {"shots": 2}}),
               key({"max_source_length": 64}), key({"train_split": "validation"}),
               key({"seed": 6}),  # demonstrations are drawn with the seed
               key(tokenizer=str(tmp_path / "extended"))]
    assert key({"seed": 6, "demonstrations": {"shots": 0}}) == key({"seed": 7, "demonstrations": {"shots": 0}})
    assert len({key(), *changed}) == len(changed) + 1
    # the key follows the file's content, whoever reads it
    copy = tmp_path / "task.parquet"
    copy.write_bytes(open_corpus(str(sample_corpus)).task_path(task).read_bytes())
    same = token_cache.file_digest(str(copy), copy.stat().st_size, 0)
    copy.write_bytes(copy.read_bytes() + b"\0")
    assert same == content != token_cache.file_digest(str(copy), copy.stat().st_size, 1)


def test_the_tokenizer_identity_is_its_content(tmp_path):
    tokenizer = cached_tokenizer("tiny")
    tokenizer.save_pretrained(tmp_path / "copy")
    tokenizer.save_pretrained(tmp_path / "more")
    extended = cached_tokenizer(str(tmp_path / "more"))
    extended.add_tokens(["<extra>"])
    extended.save_pretrained(tmp_path / "more")
    token_cache.tokenizer_identity.cache_clear()
    cached_tokenizer.cache_clear()
    assert token_cache.tokenizer_identity(str(tmp_path / "copy")) == token_cache.tokenizer_identity("tiny")
    assert token_cache.tokenizer_identity(str(tmp_path / "more")) != token_cache.tokenizer_identity("tiny")


def test_two_seeds_share_entries_and_draw_their_own_targets(sample_corpus, tmp_path):
    seeds = [MixtureConfig(tasks=["task036_qasc_topic_word_to_generate_related_fact",
                                  "task102_commongen_sentence_generation"], total_examples=60, seed=seed)
             for seed in (1, 2)]
    keys = [token_cache.rendering_settings(m) for m in seeds]
    assert keys[0] == keys[1]  # no demonstrations, no delimiter: the seed is not part of the key
    differ = 0
    for mixture in seeds:
        for source, positions in task_items(mixture, sample_corpus):
            targets = cached(source, positions, sample_corpus, tmp_path, mixture)[1]
            rows = {p: row for p, (row, _) in zip(sorted(set(map(int, positions))), render_task_rows(
                source, sorted(set(map(int, positions))), mixture, str(sample_corpus), None))}
            expected = [choose_target(rows[int(p)], mixture.seed) for p in positions]
            assert as_lists(targets) == token_ids(cached_tokenizer("tiny"), expected)
            differ += sum(choose_target(rows[int(p)], 1) != choose_target(rows[int(p)], 2) for p in positions)
    assert differ > 0, "the sample has examples with several references"
    assert len(entry_files(tmp_path)) == len({s.source_id for s, _ in task_items(seeds[0], sample_corpus)})


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign"])
def test_a_damaged_entry_is_rebuilt_not_read(sample_corpus, tmp_path, damage, monkeypatch):
    (source, positions), (other, other_positions) = task_items(MIXTURE, sample_corpus)[:2]
    expected = cached(source, positions, sample_corpus, tmp_path / "good")
    location = tmp_path / "cache"
    cached(source, positions, sample_corpus, location)
    [entry] = entry_files(location)
    data = entry.read_bytes()
    if damage == "truncate":  # a killed writer's or a full disk's file
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        middle = len(data) // 2
        entry.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    else:  # another entry's file under this key
        cached(other, other_positions, sample_corpus, tmp_path / "other")
        [foreign] = entry_files(tmp_path / "other")
        entry.write_bytes(foreign.read_bytes())
    key = token_cache.source_key(source.source_id, str(sample_corpus), token_cache.settings_key(MIXTURE, "tiny"))
    # read as another process would: this one keeps the entry it wrote, and a change in place within the
    # file system's clock tick may keep its size and modification time
    monkeypatch.setattr(token_cache, "RECENT", token_cache.RecentEntries(token_cache.RECENT_BYTES))
    assert token_cache.read_entry(str(entry), key) is None
    again = cached(source, positions, sample_corpus, location)
    assert as_lists(again[0]) == as_lists(expected[0]) and as_lists(again[1]) == as_lists(expected[1])
    assert token_cache.read_entry(str(entry), key) is not None


def test_a_write_keeps_the_rows_another_writer_added_meanwhile(sample_corpus, tmp_path):
    """Two trials that read an entry before either wrote it both add their rows: the second write
    merges with the file as it is then, so neither's rows are lost."""
    source, positions = task_items(MIXTURE, sample_corpus)[0]
    distinct = sorted(set(map(int, positions)))
    assert len(distinct) >= 2
    key = token_cache.source_key(source.source_id, str(sample_corpus), token_cache.settings_key(MIXTURE, "tiny"))
    uri = token_cache.entry_uri(str(tmp_path), key)
    first, second = (token_cache.tokenize_rows(source, part, MIXTURE, str(sample_corpus), "tiny")
                     for part in (distinct[::2], distinct[1::2]))
    token_cache.add_rows(uri, key, source.source_id, first)
    token_cache.add_rows(uri, key, source.source_id, second)
    entry = token_cache.read_entry(uri, key)
    assert entry.column("position").to_pylist() == distinct
    assert entry.num_rows == len(distinct) and entry.equals(token_cache.merged(first, second))


def test_an_unchanged_entry_is_read_once_per_process_and_a_rewritten_one_again(sample_corpus, tmp_path):
    """A process keeps the entries it wrote or read last (`RECENT`): an unchanged file is not read again,
    a file another writer renamed over it is, and past the byte limit the least recently used go first."""
    source, positions = task_items(MIXTURE, sample_corpus)[0]
    distinct = sorted(set(map(int, positions)))
    key = token_cache.source_key(source.source_id, str(sample_corpus), token_cache.settings_key(MIXTURE, "tiny"))
    uri = token_cache.entry_uri(str(tmp_path), key)
    token_cache.add_rows(uri, key, source.source_id,
                         token_cache.tokenize_rows(source, distinct[:1], MIXTURE, str(sample_corpus), "tiny"))
    first = token_cache.read_tokens(uri, key)
    assert token_cache.RECENT.get(uri, storage.file_identity(uri)) is first  # kept when it was written
    assert token_cache.read_tokens(uri, key) is first and first.positions.tolist() == distinct[:1]
    everything = token_cache.tokenize_rows(source, distinct, MIXTURE, str(sample_corpus), "tiny")
    metadata = {"key": key, "task_id": source.source_id, "rows": everything.num_rows, "format": token_cache.FORMAT}
    storage.write_bytes(uri, token_cache.entry_bytes(everything, metadata))  # another process's write
    again = token_cache.read_tokens(uri, key)
    assert again is not first and again.positions.tolist() == distinct
    recent = token_cache.RecentEntries(limit=250)
    for name, size in [("a", 100), ("b", 100), ("c", 100)]:
        recent.put(name, (1, size, 0), first, size)
        recent.get("a", (1, 100, 0))  # a is read again each time: b, the least recently read, goes
    assert list(recent.held) == ["c", "a"] and recent.size == 200
    assert recent.get("a", (2, 100, 0)) is None  # another file under that name
    recent.put("huge", (1, 300, 0), first, 300)
    assert "huge" not in recent.held


def test_a_merge_keeps_each_position_once_in_order_the_new_row_winning():
    import pyarrow as pa

    def rows(positions, mark):
        return pa.table({"position": pa.array(positions, pa.int64()), "example_id": [f"{mark}{p}" for p in positions],
                         "source_ids": pa.array([[p] for p in positions], pa.large_list(pa.int32())),
                         "reference_ids": pa.array([[[p]] for p in positions], pa.list_(pa.list_(pa.int32())))},
                        schema=token_cache.SCHEMA)

    table = token_cache.merged(rows([1, 4, 7], "old"), rows([9, 4, 2], "new"))
    assert table.column("position").to_pylist() == [1, 2, 4, 7, 9]
    assert table.column("example_id").to_pylist() == ["old1", "new2", "new4", "old7", "new9"]
    assert token_cache.merged(None, rows([3, 1], "new")).column("position").to_pylist() == [1, 3]


def build_entry(args):
    source, positions, corpus, location = args
    cached(source, positions, corpus, location)
    return True


@pytest.mark.slow  # starts processes
def test_two_processes_building_one_entry_leave_one_whole_entry(sample_corpus, tmp_path):
    source, positions = task_items(MIXTURE, sample_corpus)[0]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(build_entry, [(source, positions, sample_corpus, tmp_path)] * 4) == [True] * 4
    [entry] = entry_files(tmp_path)  # no file written aside is left
    key = token_cache.source_key(source.source_id, str(sample_corpus), token_cache.settings_key(MIXTURE, "tiny"))
    assert token_cache.read_entry(str(entry), key).num_rows == len(set(map(int, positions)))


def test_an_unwritable_location_fails_naming_it(tmp_path):
    (tmp_path / "file").write_text("")
    location = str(tmp_path / "file" / "cache")
    with pytest.raises(UserError, match=f"token cache {location}: cannot be written"):
        token_cache.check_writable(location)
    token_cache.check_writable(str(tmp_path / "cache"))
    assert not entry_files(tmp_path / "cache")


def test_coverage_and_prune(sample_corpus, tmp_path):
    trial = (MIXTURE, str(sample_corpus), "tiny", str(tmp_path))
    before = token_cache.coverage([trial], bytes_per_example=100)
    assert before["cached_examples"] == 0 and before["expected_bytes"] == before["examples"] * 100
    items = task_items(MIXTURE, sample_corpus)
    for source, positions in items[:2]:
        cached(source, positions, sample_corpus, tmp_path)
    half = token_cache.coverage([trial], bytes_per_example=100)
    held = sum(len(set(map(int, p))) for _, p in items[:2])
    assert half["cached_examples"] == held and 0 < half["cached_fraction"] < 1
    assert half["bytes"] == sum(p.stat().st_size for p in entry_files(tmp_path))

    entries = entry_files(tmp_path)
    stale = entries[0].parent / ".x.arrow.0123.tmp"
    stale.write_bytes(b"partial")
    os.utime(stale, (0, 0))
    entries[1].write_bytes(b"damaged")
    result = token_cache.prune(str(tmp_path))
    assert result["removed"] == 2 and entry_files(tmp_path) == [entries[0]]
    assert token_cache.prune(str(tmp_path), max_bytes=0)["kept"] == 0 and not entry_files(tmp_path)


def test_cache_list_and_prune_commands(sample_corpus, tmp_path, capsys):
    from imlsweep.cli import main

    source, positions = task_items(MIXTURE, sample_corpus)[0]
    cached(source, positions, sample_corpus, tmp_path)
    assert main(["mixture", "cache", "list", str(tmp_path), "--json"]) == 0
    assert f'"task_id": "{source.source_id}"' in capsys.readouterr().out
    assert main(["mixture", "cache", "prune", str(tmp_path), "--max-mb", "-1"]) == 2
    assert "--max-mb: must not be negative" in capsys.readouterr().err
    assert main(["mixture", "cache", "prune", str(tmp_path), "--older-than-days", "0"]) == 0
    assert not entry_files(tmp_path)


def test_entry_draws_order_follows_positions(sample_corpus, tmp_path):
    source, positions = task_items(MIXTURE, sample_corpus)[0]
    reversed_positions = np.asarray(positions)[::-1]
    forward = cached(source, positions, sample_corpus, tmp_path)
    backward = cached(source, reversed_positions, sample_corpus, tmp_path)
    assert as_lists(backward[0]) == as_lists(forward[0])[::-1]


def test_rows_with_a_warm_cache_equal_a_cold_one_and_resume_mid_epoch(ray_local, sample_corpus, tmp_path):
    from imlsweep.data.pipeline import build_train_dataset, iter_train_batches

    mixture = MIXTURE.model_copy(update={"max_length": 384})
    cold = build_train_dataset(mixture, sample_corpus, "tiny", "causal", segment_windows=1, window=40,
                               token_cache=str(tmp_path)).take_all()
    assert entry_files(tmp_path)
    warm_dataset = build_train_dataset(mixture, sample_corpus, "tiny", "causal", segment_windows=3, window=40,
                                       token_cache=str(tmp_path))
    warm = warm_dataset.take_all()
    assert len(warm) == len(cold) > 1
    for a, b in zip(cold, warm):
        assert a["packed_index"] == b["packed_index"] and (a["input_ids"] == b["input_ids"]).all()
        assert list(a["document_lengths"]) == list(b["document_lengths"])
    batches = list(iter_train_batches(warm_dataset, 2, "causal"))
    resumed = list(iter_train_batches(warm_dataset, 2, "causal", skip_batches=2))
    assert len(resumed) == len(batches) - 2 > 0
    for a, b in zip(batches[2:], resumed):
        assert all((a[column] == b[column]).all() for column in a)
