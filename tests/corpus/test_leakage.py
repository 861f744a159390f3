"""The 13-gram leakage check: pure pieces without Ray, then the Ray Data run on a corpus with planted copies."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from imlsweep.corpus.build import build_corpus
from imlsweep.corpus.config import RecordsSource, load_corpus_config
from imlsweep.corpus.leakage import (build_eval_index, find_leakage, flagged_pairs, lookup_matches, ngram_hashes,
                                     shared_source_pairs)

EVAL_TASK = "task1344_glue_entailment_classification"
LONG = "the quick brown fox jumps over the lazy dog while the farmer watches from his old wooden porch"


def test_ngram_hashes_find_a_shared_13_gram_only():
    shared = set(ngram_hashes("Intro words. " + LONG)) & set(ngram_hashes(LONG.upper() + " and more after it"))
    assert shared and len(shared) == len(ngram_hashes(LONG))
    assert not set(ngram_hashes(LONG)) & set(ngram_hashes(" ".join(reversed(LONG.split()))))
    assert len(ngram_hashes(" ".join(["word"] * 13))) == 1
    assert len(ngram_hashes(" ".join(["word"] * 12))) == 0
    np.testing.assert_array_equal(ngram_hashes(LONG), ngram_hashes(LONG))  # stable, no per-process salt


def test_index_lookup_and_flagged_pairs():
    eval_ngrams = pd.DataFrame({"ngram": [5, 7, 7, 9], "eval_task": ["e", "e", "f", "f"],
                                "example_id": ["e1", "e2", "f1", "f2"]})
    index = build_eval_index(eval_ngrams)
    train_ngrams = pd.DataFrame({"ngram": [7, 7, 3, 9], "train_task": ["a", "b", "a", "a"]})
    matches = lookup_matches(train_ngrams, index)
    assert sorted(map(tuple, matches.to_numpy().tolist())) == [
        ("a", "e", "e2"), ("a", "f", "f1"), ("a", "f", "f2"), ("b", "e", "e2"), ("b", "f", "f1")]
    flagged = flagged_pairs(matches, {"e": 4, "f": 2}, threshold=0.3)
    assert flagged.to_dict(orient="records") == [
        {"train_task": "a", "eval_task": "f", "overlapping_examples": 2, "eval_examples": 2, "fraction": 1.0},
        {"train_task": "b", "eval_task": "f", "overlapping_examples": 1, "eval_examples": 2, "fraction": 0.5}]
    assert lookup_matches(pd.DataFrame({"ngram": [1], "train_task": ["a"]}), index).empty


def test_shared_data_source_pairs():
    manifest = pd.DataFrame({"task_id": ["t1", "t2", "e1"], "split": ["train", "train", "test"],
                             "data_source": ["rte;snli", "imdb", "RTE"]})
    assert shared_source_pairs(manifest) == [{"train_task": "t1", "eval_task": "e1", "data_source": "rte"}]


@pytest.fixture(scope="module")
def planted_corpus(tmp_path_factory, superni_dir, sample_corpus_config):
    """The sample plus two training tasks: one copies 3 test instances of an eval task (and one of its
    training-pool instances, which must not count), one shares the eval task's data source only."""
    tmp = tmp_path_factory.mktemp("leakage")
    instances = json.loads((superni_dir / "tasks" / f"{EVAL_TASK}.json").read_text())["Instances"]
    copied = [instances[index] for index in (0, 3, 7, 15)]  # 15 lies in the eval task's training pool
    assert all(len(instance["input"].split()) >= 13 for instance in copied)
    rows = [{"task_id": "planted_copy", "input": "Rewrite: " + instance["input"], "outputs": ["ok"],
             "category": "Paraphrasing", "data_source": "planted"} for instance in copied]
    rows += [{"task_id": "planted_same_source", "input": f"unrelated text number {index}", "outputs": ["x"],
              "category": "Paraphrasing", "data_source": "rte"} for index in range(3)]
    (tmp / "planted.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = load_corpus_config(sample_corpus_config)
    config.sources.append(RecordsSource(format="jsonl", benchmark="planted", path=str(tmp / "planted.jsonl")))
    return build_corpus(config, tmp / "corpus")


@pytest.fixture(scope="module")
def report(planted_corpus, ray_local):
    return find_leakage(planted_corpus)


def test_leakage_finds_the_planted_overlap_and_nothing_else(report, planted_corpus):
    assert report.eval_tasks == len(planted_corpus.task_ids(split="test"))
    assert report.pairs_checked == report.train_tasks * report.eval_tasks
    assert report.flagged == [{"train_task": "planted_copy", "eval_task": EVAL_TASK, "overlapping_examples": 3,
                               "eval_examples": 12, "fraction": 0.25}]
    assert report.shared_data_source == [
        {"train_task": "planted_same_source", "eval_task": EVAL_TASK, "data_source": "rte"}]


def test_a_removals_file_drops_the_confirmed_task_on_the_next_build(tmp_path, planted_corpus, report):
    removals = tmp_path / "removals.txt"
    removals.write_text("".join(f"{pair['train_task']}  # leaks into {pair['eval_task']}\n"
                                for pair in report.flagged))
    config = planted_corpus.config.model_copy(update={"removals": str(removals)})
    rebuilt = build_corpus(config, tmp_path / "rebuilt")
    assert "planted_copy" not in rebuilt.task_ids()
    assert "planted_same_source" in rebuilt.task_ids()
