"""The bundled SuperNI sample, built with sweeps/corpora/superni_sample.yaml (the `sample_corpus` fixture)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from imlsweep.corpus.schema import MANIFEST_SCHEMA, ROW_SCHEMA
from imlsweep.corpus.store import Corpus
from imlsweep.errors import UserError


@pytest.fixture(scope="module")
def corpus(sample_corpus) -> Corpus:
    return Corpus.open(sample_corpus)


@pytest.fixture(scope="module")
def source_tasks(superni_dir) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in (superni_dir / "tasks").glob("*.json")}


@pytest.fixture(scope="module")
def split_lists(superni_dir) -> dict[str, set[str]]:
    folder = superni_dir / "splits" / "default"
    return {name: set(folder.joinpath(f"{name}_tasks.txt").read_text().split()) for name in ("train", "test")}


def test_every_task_and_instance_is_built(corpus, source_tasks):
    assert corpus.task_ids() == sorted(source_tasks)
    for task_id, task in source_tasks.items():
        table = corpus.read_task(task_id)
        assert table.num_rows == len(task["Instances"])
        assert table.column("example_id").to_pylist() == [instance["id"] for instance in task["Instances"]]
        assert table.column("source_index").to_pylist() == list(range(len(task["Instances"])))
        row = corpus.manifest.set_index("task_id").loc[task_id]
        assert row["n_examples"] == len(task["Instances"])


def test_fields_match_the_task_files(corpus, source_tasks):
    for task_id, task in source_tasks.items():
        rows = corpus.read_task(task_id).to_pylist()
        assert {row["category"] for row in rows} == {task["Categories"][0]}
        assert rows[0]["definition"] == "\n".join(task["Definition"])
        assert rows[0]["data_source"] == ";".join(task["Source"])
        assert rows[0]["instruction_type"] == "task"
        assert rows[0]["language"] == "English"
        assert rows[0]["positive_examples"] == [
            {"input": e["input"], "output": e["output"], "explanation": e.get("explanation", "")}
            for e in task["Positive Examples"]
        ]
        assert len(rows[0]["negative_examples"]) == len(task["Negative Examples"])
        assert [row["outputs"] for row in rows] == [instance["output"] for instance in task["Instances"]]
        assert [row["input"] for row in rows] == [instance["input"] for instance in task["Instances"]]


def test_multiple_outputs_survive(corpus, source_tasks):
    several = [(task_id, index) for task_id, task in source_tasks.items()
               for index, instance in enumerate(task["Instances"]) if len(instance["output"]) > 1]
    assert several, "the sample has instances with several references"
    task_id, index = several[0]
    outputs = corpus.read_task(task_id, columns=["outputs"]).column("outputs")[index].as_py()
    assert outputs == source_tasks[task_id]["Instances"][index]["output"]
    assert len(outputs) > 1


def test_splits_follow_the_split_files(corpus, split_lists):
    manifest = corpus.manifest.set_index("task_id")
    for task_id, row in manifest.iterrows():
        if task_id in split_lists["test"]:
            assert (row["split"], row["level"]) == ("test", "fully_held_out")
        else:
            assert task_id in split_lists["train"]
            assert (row["split"], row["level"]) == ("train", "fully_supervised")
    assert set(corpus.task_ids(split="test")) == split_lists["test"] & set(manifest.index)


def test_eval_tasks_keep_test_validation_and_a_training_pool(corpus):
    for task_id in corpus.task_ids(split="test"):
        table = corpus.read_task(task_id, columns=["split", "source_index"])
        splits = table.column("split").to_pylist()
        n = len(splits)
        expected = ["test"] * min(n, 10) + ["validation"] * min(max(n - 10, 0), 2) + ["train"] * max(n - 12, 0)
        assert splits == expected, task_id
        row = corpus.manifest.set_index("task_id").loc[task_id]
        assert (row["n_test"], row["n_validation"], row["n_train"]) == (
            splits.count("test"), splits.count("validation"), splits.count("train"))
    for task_id in corpus.task_ids(split="train"):
        assert set(corpus.read_task(task_id, columns=["split"]).column("split").to_pylist()) == {"train"}


def test_files_have_the_contract_schemas(corpus):
    assert pq.read_schema(corpus.dir / "manifest.parquet").remove_metadata() == MANIFEST_SCHEMA
    for path in corpus.task_paths(corpus.task_ids()):
        assert pq.read_schema(path).remove_metadata() == ROW_SCHEMA
    assert list(corpus.manifest["task_id"]) == sorted(corpus.manifest["task_id"])


def test_store_api(corpus):
    assert corpus.config.name == "superni_sample"
    assert corpus.config.split.eval_test_size == 10
    task_id = corpus.task_ids(category="Textual Entailment")[0]
    assert corpus.task_path(task_id) == corpus.dir / "data" / "superni" / f"{task_id}.parquet"
    assert corpus.task_ids(benchmark="superni") == corpus.task_ids()
    assert corpus.task_ids(benchmark="flan") == []
    assert corpus.read_task(task_id, columns=["input"]).column_names == ["input"]
    with pytest.raises(UserError, match="no task 'nope'"):
        corpus.task_path("nope")


def test_opening_a_folder_that_is_not_a_corpus_names_it(tmp_path):
    with pytest.raises(UserError, match=str(tmp_path)):
        Corpus.open(tmp_path)


def test_stats_are_written(corpus):
    stats = json.loads((corpus.dir / "stats.json").read_text())
    superni = stats["benchmarks"]["superni"]
    assert superni["tasks"] == len(corpus.manifest)
    assert superni["examples"] == int(corpus.manifest["n_examples"].sum())
    assert superni["categories"] == corpus.manifest["category"].nunique()
    assert superni["prompts_per_task"] == 1.0
    assert superni["prompt_len_mean"] > 0 and superni["prompt_len_std"] > 0
    assert stats["splits"]["test"]["examples"] == int(corpus.manifest["n_test"].sum())
    assert stats["splits"]["dev"]["examples"] == int(corpus.manifest["n_validation"].sum())
    train_tasks = corpus.manifest[corpus.manifest["split"] == "train"]
    assert stats["splits"]["train"]["examples"] == int(train_tasks["n_train"].sum())
    assert stats["build"] == {"invalid": 0, "left_out": {}}
