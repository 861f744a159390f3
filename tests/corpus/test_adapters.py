"""The jsonl / parquet and hf adapters on files in the formats PromptSource, FLAN and HF datasets use."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from imlsweep.corpus.build import build_corpus
from imlsweep.corpus.config import CorpusConfig
from imlsweep.errors import UserError

PS_ROWS = [
    {"task_id": "ps_rte", "example_id": f"rte-{index}", "template_id": template,
     "input": f"{premise} Question: does this imply that the sky is {color}? Yes or no?",
     "outputs": ["yes" if color == "blue" else "no"], "candidates": ["yes", "no"]}
    for index, (premise, color) in enumerate([("The sky is blue.", "blue"), ("Grass grows.", "red"),
                                               ("Rain falls.", "blue")])
    for template in ("gpt3_style", "does_it_follow")
] + [
    {"task_id": "ps_imdb", "example_id": "imdb-0", "template_id": "sentiment", "input": "Loved it. Positive?",
     "outputs": "yes", "candidates": None},
]


def records_config(path, file_format, **source) -> CorpusConfig:
    return CorpusConfig.model_validate({
        "sources": [{"benchmark": "promptsource", "format": file_format, "path": str(path), **source}],
        "split": {"held_out_tasks": ["ps_rte"], "eval_test_size": 1, "eval_validation_size": 1},
    })


@pytest.fixture
def promptsource_export(tmp_path):
    folder = tmp_path / "promptsource"
    folder.mkdir()
    (folder / "part-0.jsonl").write_text("".join(json.dumps(row) + "\n" for row in PS_ROWS), encoding="utf-8")
    metadata = {"tasks": {"ps_rte": {"category": "natural language inference", "data_source": "rte"},
                          "ps_imdb": {"category": "sentiment", "data_source": "imdb"}}}
    (tmp_path / "tasks.yaml").write_text(yaml.safe_dump(metadata), encoding="utf-8")
    return folder


def test_jsonl_templates_candidates_and_metadata(tmp_path, promptsource_export):
    config = records_config(promptsource_export, "jsonl", metadata=str(tmp_path / "tasks.yaml"))
    config.category_map = {"natural language inference": "Textual Entailment"}
    corpus = build_corpus(config, tmp_path / "out")
    manifest = corpus.manifest.set_index("task_id")
    assert manifest.loc["ps_rte", "category"] == "Textual Entailment"
    assert (manifest.loc["ps_rte", "split"], manifest.loc["ps_rte", "instruction_type"]) == ("test", "instance")
    rows = corpus.read_task("ps_rte").to_pylist()
    assert len(rows) == 6  # one row per (example, template)
    assert [row["template_id"] for row in rows[:2]] == ["gpt3_style", "does_it_follow"]
    assert [row["split"] for row in rows] == ["test", "test", "validation", "validation", "train", "train"]
    assert rows[0]["candidates"] == ["yes", "no"] and rows[0]["data_source"] == "rte"
    imdb = corpus.read_task("ps_imdb").to_pylist()[0]
    assert (imdb["outputs"], imdb["candidates"], imdb["definition"]) == (["yes"], None, "")
    stats = json.loads((corpus.dir / "stats.json").read_text())
    assert stats["benchmarks"]["promptsource"]["prompts_per_task"] == 1.5


def test_parquet_file_per_task_with_column_metadata_and_field_names(tmp_path):
    folder = tmp_path / "flan"
    folder.mkdir()
    table = pa.table({"inputs": ["Translate to French: cat", "Translate to French: dog"],
                      "targets": ["chat", "chien"], "category": ["Translation", "Translation"],
                      "data_source": ["wmt14", "wmt14"]})
    pq.write_table(table, folder / "flan_wmt14_enfr.parquet")
    config = CorpusConfig.model_validate({"sources": [{
        "benchmark": "flan", "format": "parquet", "path": str(folder),
        "fields": {"input": "inputs", "outputs": "targets"}}]})
    corpus = build_corpus(config, tmp_path / "out")
    rows = corpus.read_task("flan_wmt14_enfr").to_pylist()
    assert [(row["input"], row["outputs"], row["example_id"]) for row in rows] == [
        ("Translate to French: cat", ["chat"], "flan_wmt14_enfr-0"),
        ("Translate to French: dog", ["chien"], "flan_wmt14_enfr-1")]
    assert (rows[0]["category"], rows[0]["data_source"], rows[0]["benchmark"]) == ("Translation", "wmt14", "flan")


def test_records_bad_input_names_file_task_and_field(tmp_path, promptsource_export):
    bad = promptsource_export / "part-1.jsonl"
    bad.write_text(json.dumps({"task_id": "ps_cb", "input": "x", "outputs": 3, "category": "nli"}) + "\n")
    with pytest.raises(UserError, match=r"part-1.jsonl: task ps_cb: field row 0.outputs: expected a list of "
                                        r"strings, got int"):
        build_corpus(records_config(promptsource_export, "jsonl", metadata=str(tmp_path / "tasks.yaml")),
                     tmp_path / "out")
    bad.write_text('{"task_id": "ps_cb", "input": \n')
    with pytest.raises(UserError, match=r"part-1.jsonl: task \(every task in part-1.jsonl\): field line 1: "
                                        "malformed JSON"):
        build_corpus(records_config(promptsource_export, "jsonl", metadata=str(tmp_path / "tasks.yaml")),
                     tmp_path / "out")
    bad.unlink()
    with pytest.raises(UserError, match=r"part-0.jsonl: task ps_rte: field category: missing"):
        build_corpus(records_config(promptsource_export, "jsonl"), tmp_path / "out")


@pytest.fixture
def hf_datasets(tmp_path):
    import datasets

    folder = tmp_path / "hf"
    (folder / "squad_like").mkdir(parents=True)
    rows = [{"question": f"What is {index}?", "context": f"{index} is a number.", "answer": str(index)}
            for index in range(5)]
    (folder / "squad_like" / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    labelled = datasets.Dataset.from_dict(
        {"text": ["good film", "bad film", "fine film"], "label": [1, 0, 1]},
        features=datasets.Features({"text": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["negative", "positive"])}))
    labelled.to_parquet(str(folder / "sentiment.parquet"))
    (folder / "instructions.yaml").write_text(yaml.safe_dump({
        "crossfit_squad_like": "Answer the question from the context.",
        "crossfit_sentiment": "Is the review positive or negative?"}))
    return folder


def test_hf_local_datasets_with_field_mapping_and_class_labels(tmp_path, hf_datasets):
    config = CorpusConfig.model_validate({"sources": [{
        "benchmark": "crossfit", "format": "hf", "instructions": str(hf_datasets / "instructions.yaml"),
        "tasks": [
            {"task_id": "crossfit_squad_like", "dataset": str(hf_datasets / "squad_like"),
             "input": ["question", "context"], "output": "answer", "category": "extractive qa"},
            {"task_id": "crossfit_sentiment", "dataset": "parquet",
             "data_files": [str(hf_datasets / "sentiment.parquet")], "input": "text", "output": "label",
             "category": "sentiment", "data_source": "made_up_reviews"},
        ]}]})
    corpus = build_corpus(config, tmp_path / "out")
    qa = corpus.read_task("crossfit_squad_like").to_pylist()
    assert len(qa) == 5
    assert qa[1]["input"] == "question: What is 1?\ncontext: 1 is a number."
    assert (qa[1]["outputs"], qa[1]["instruction_type"]) == (["1"], "keywords")
    assert qa[1]["definition"] == "Answer the question from the context."
    sentiment = corpus.read_task("crossfit_sentiment").to_pylist()
    assert [row["outputs"] for row in sentiment] == [["positive"], ["negative"], ["positive"]]
    assert sentiment[0]["candidates"] == ["negative", "positive"]
    assert sentiment[0]["data_source"] == "made_up_reviews"


def test_hf_task_without_instruction_or_dataset_is_named(tmp_path, hf_datasets):
    config = CorpusConfig.model_validate({"sources": [{
        "benchmark": "t5", "format": "hf", "instructions": str(hf_datasets / "instructions.yaml"),
        "tasks": [{"task_id": "t5_unknown", "dataset": str(hf_datasets / "squad_like"), "input": "question",
                   "output": "answer", "category": "qa"},
                  {"task_id": "crossfit_squad_like", "dataset": str(hf_datasets / "squad_like"),
                   "input": "question", "output": "missing_field", "category": "qa"}]}]})
    with pytest.raises(UserError) as error:
        build_corpus(config, tmp_path / "out")
    message = str(error.value)
    assert "instructions.yaml: task t5_unknown: field instruction: missing from the instructions file" in message
    assert "squad_like: task crossfit_squad_like: field train[0].missing_field: missing" in message
