"""Bad input: each defect gives a message naming the file, the task and the field; the default build
writes nothing, --skip-invalid builds the valid tasks and lists the rejected ones in invalid.jsonl."""

from __future__ import annotations

import json

import pytest

from corpus_files import superni_task, write_json
from imlsweep.corpus.build import build_corpus
from imlsweep.corpus.config import CorpusConfig
from imlsweep.errors import UserError


def config_for(path, **extra) -> CorpusConfig:
    return CorpusConfig.model_validate({"sources": [{"benchmark": "superni", "format": "superni", "path": str(path)}],
                                        **extra})


def without(key: str) -> dict:
    task = superni_task()
    del task[key]
    return task


def instance_without_output() -> dict:
    task = superni_task()
    del task["Instances"][1]["output"]
    return task


def string_output() -> dict:
    task = superni_task()
    task["Instances"][2]["output"] = "positive"
    return task


# (file content writer, field named in the message, words of the reason)
BAD_TASKS = {
    "malformed_json": (lambda path: path.write_text('{"Definition": ["x"], "Instances": [', encoding="utf-8"),
                       "<file>", "malformed JSON"),
    "no_definition": (lambda path: write_json(path, without("Definition")), "Definition", "missing"),
    "no_instances": (lambda path: write_json(path, without("Instances")), "Instances", "missing"),
    "instance_without_output": (lambda path: write_json(path, instance_without_output()),
                                "Instances[1].output", "missing"),
    "non_list_output": (lambda path: write_json(path, string_output()),
                        "Instances[2].output", "expected a list of strings, got str"),
    "undecodable_bytes": (lambda path: path.write_bytes(json.dumps(superni_task()).encode().replace(
        b"review number 1", b"review \xff\xfe 1")), "<file>", "undecodable bytes at offset"),
}


@pytest.mark.parametrize("defect", sorted(BAD_TASKS))
def test_each_defect_is_named_and_nothing_is_written(tmp_path, small_superni, defect):
    write, field, reason = BAD_TASKS[defect]
    path = small_superni / "tasks" / f"task9000_{defect}.json"
    write(path)
    out = tmp_path / "out"
    with pytest.raises(UserError) as error:
        build_corpus(config_for(small_superni), out)
    message = str(error.value)
    assert f"{path}: task task9000_{defect}: field {field}: {reason}" in message
    assert "1 invalid task(s)" in message
    assert not out.exists()
    assert sorted(item.name for item in tmp_path.iterdir()) == ["superni"]  # no half-written folder either


def test_unknown_category_is_rejected(tmp_path, small_superni):
    path = write_json(small_superni / "tasks" / "task9000_odd.json", superni_task(category="Hate Speech Detection"))
    known = ["Textual Entailment", "Program Execution", "Sentiment Analysis"]
    with pytest.raises(UserError, match=f"{path}: task task9000_odd: field category: unknown category "
                                        "'Hate Speech Detection': not in the config's categories"):
        build_corpus(config_for(small_superni, categories=known), tmp_path / "out")
    # Mapped into a known category, the same task is valid.
    corpus = build_corpus(config_for(small_superni, categories=known + ["Toxic Language Detection"],
                                     category_map={"Hate speech detection": "Toxic Language Detection"}),
                          tmp_path / "out")
    assert "task9000_odd" in corpus.task_ids()


def test_skip_invalid_builds_the_valid_tasks_and_lists_every_rejected_one(tmp_path, small_superni):
    for defect, (write, _, _) in BAD_TASKS.items():
        write(small_superni / "tasks" / f"task9000_{defect}.json")
    with pytest.raises(UserError, match=f"{len(BAD_TASKS)} invalid task"):
        build_corpus(config_for(small_superni), tmp_path / "strict")
    corpus = build_corpus(config_for(small_superni), tmp_path / "out", skip_invalid=True)
    assert len(corpus.task_ids()) == 3
    rejected = [json.loads(line) for line in (corpus.dir / "invalid.jsonl").read_text().splitlines()]
    assert sorted(item["task_id"] for item in rejected) == sorted(f"task9000_{defect}" for defect in BAD_TASKS)
    assert all(item["file"].endswith(f"{item['task_id']}.json") and item["field"] and item["reason"]
               for item in rejected)
    assert json.loads((corpus.dir / "stats.json").read_text())["build"]["invalid"] == len(BAD_TASKS)


def test_a_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a SuperNI folder"):
        build_corpus(config_for(tmp_path / "nowhere"), tmp_path / "out")


def test_an_invalid_task_in_the_removals_file_is_left_out(tmp_path, small_superni):
    BAD_TASKS["no_definition"][0](small_superni / "tasks" / "task9000_removed.json")
    removals = tmp_path / "removals.txt"
    removals.write_text("# confirmed leaks\ntask9000_removed\n")
    corpus = build_corpus(config_for(small_superni, removals=str(removals)), tmp_path / "out")
    assert "task9000_removed" not in corpus.task_ids() and len(corpus.task_ids()) == 3
