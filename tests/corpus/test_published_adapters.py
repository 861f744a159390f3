"""The Flan Collection, CrossFit, UnifiedSKG, chain-of-thought and nested `datasets` adapters, on files in
their published layouts; the renderers and the source-given instance splits."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml

from published_files import SAMPLE, write_jsonl, write_lines
from imlsweep.corpus.adapters.crossfit import inline_options
from imlsweep.corpus.adapters.flan import trailing_options
from imlsweep.corpus.adapters.renderers import render_value
from imlsweep.corpus.adapters.unifiedskg import model_input
from imlsweep.corpus.build import build_corpus
from imlsweep.corpus.config import CorpusConfig
from imlsweep.corpus.splits import instance_splits
from imlsweep.corpus.task import TaskProblem


def build(tmp_path, source: dict, **config):
    return build_corpus(CorpusConfig.model_validate({"sources": [source], **config}), tmp_path / "out")


def flan_metadata(tmp_path) -> str:
    path = tmp_path / "flan_tasks.yaml"
    path.write_text(yaml.safe_dump({"tasks": {
        "cosmos_qa:1.0.0": {"category": "qa", "data_source": "cosmos_qa"}, "gigaword:1.2.0": {"category": "summ"},
        "copa:1.0.0": {"category": "cause effect"}, "sentiment140:1.0.0": {"category": "sentiment"}}}))
    return str(path)


def test_flan_shards_grouped_into_tasks_with_template_types_and_options(tmp_path):
    corpus = build(tmp_path, {"format": "flan", "path": str(SAMPLE / "flan"), "metadata": flan_metadata(tmp_path),
                              "task_sources": ["Flan2021"]})
    assert corpus.task_ids() == ["copa_1.0.0", "cosmos_qa_1.0.0", "gigaword_1.2.0", "sentiment140_1.0.0"]
    cosmos = corpus.read_task("cosmos_qa_1.0.0").to_pylist()
    assert Counter(row["template_id"] for row in cosmos) == {"zs_opt": 4, "zs_noopt": 2, "fs_opt": 2}
    by_start = {(row["input"].split("\n")[0], row["template_id"]): row for row in cosmos}
    zero_shot = by_start[("I woke up late and missed the bus, so I ran to work.", "zs_opt")]
    assert zero_shot["candidates"] == ["They missed the bus.", "They wanted exercise.", "It was raining."]
    assert zero_shot["outputs"] == ["They missed the bus."]
    assert {row["candidates"] is None for row in cosmos if row["template_id"] == "zs_noopt"} == {True}
    few_shot = next(row for row in cosmos if row["template_id"] == "fs_opt" and "I lost my phone" in row["input"])
    assert few_shot["candidates"] == ["A map.", "A compass.", "A friend's phone."]  # the last block: the question's
    assert {(row["benchmark"], row["instruction_type"], row["data_source"]) for row in cosmos} == {
        ("flan", "instance", "cosmos_qa")}
    assert corpus.manifest.set_index("task_id").loc["gigaword_1.2.0", "data_source"] == "gigaword:1.2.0"
    left_out = json.loads((corpus.dir / "stats.json").read_text())["build"]["left_out"]
    assert left_out == {"task_source 'T0' not in task_sources": ["adversarial_qa_dbert_answer_the_following_q"]}


def test_flan_template_type_filter_prefix_and_parquet_shards(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for path in sorted((SAMPLE / "flan").glob("*.jsonl")) for line in path.read_text().splitlines()]
    for row in rows:
        row["template_type"] = row["template_type"].replace("_", "")  # the spelling FLAN's code also writes
    (tmp_path / "shards").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "shards" / "train-00000-of-00001.parquet")
    corpus = build(tmp_path, {"format": "flan", "path": str(tmp_path / "shards"), "metadata": flan_metadata(tmp_path),
                              "task_sources": ["Flan2021"], "template_types": ["zs_opt"], "task_prefix": "flan_"})
    assert corpus.task_ids() == ["flan_copa_1.0.0", "flan_cosmos_qa_1.0.0", "flan_sentiment140_1.0.0"]  # no zs_opt row
    assert {row["template_id"] for row in corpus.read_task("flan_cosmos_qa_1.0.0").to_pylist()} == {"zs_opt"}
    assert len(corpus.read_task("flan_cosmos_qa_1.0.0")) == 4


def test_options_parsers():
    assert trailing_options("Q?\nOPTIONS:\n- yes\n- no") == ["yes", "no"]
    assert trailing_options("Q?\n\nOptions:\n- a b\n- c\nA:") == ["a b", "c"]
    assert trailing_options("a list:\n- one only") is None
    assert inline_options("Which? (A) red apple (B) blue (C) green") == ["red apple", "blue", "green"]
    assert inline_options("Pick (A) one (C) two") is None


def test_crossfit_layout_dev_as_validation_several_answers_and_candidates(tmp_path):
    instructions = tmp_path / "instructions.yaml"
    instructions.write_text(yaml.safe_dump({"ai2_arc": "Choose.", "freebase_qa": "Answer.", "hate": "Hate?"}))
    corpus = build(tmp_path, {"format": "crossfit", "path": str(SAMPLE / "crossfit"), "instructions": str(instructions),
                              "tasks": [{"task": "ai2_arc", "category": "qa"}, {"task": "freebase_qa", "category": "qa"},
                                        {"task": "tweet_eval-hate", "task_id": "hate", "category": "hate speech",
                                         "candidates": "labels"}]})
    arc = corpus.read_task("ai2_arc").to_pylist()
    assert [row["split"] for row in arc] == ["train"] * 6 + ["validation"] * 2 + ["test"] * 2
    assert arc[0]["input"] == "Which gas do plants take in from the air? (A) oxygen (B) carbon dioxide (C) helium (D) neon"
    assert (arc[0]["outputs"], arc[0]["candidates"]) == (["carbon dioxide"], ["oxygen", "carbon dioxide", "helium", "neon"])
    assert (arc[0]["instruction_type"], arc[0]["definition"], arc[0]["example_id"]) == ("keywords", "Choose.",
                                                                                        "ai2_arc-train-1")
    freebase = corpus.read_task("freebase_qa").to_pylist()
    assert freebase[0]["outputs"] == ["leonardo da vinci", "da vinci"] and freebase[0]["candidates"] is None
    hate = corpus.read_task("hate").to_pylist()
    assert {tuple(row["candidates"]) for row in hate} == {("hate", "non-hate")}
    assert corpus.manifest.set_index("task_id").loc["hate", "n_validation"] == 2


def test_crossfit_variant_file_names(tmp_path):
    (tmp_path / "instructions.yaml").write_text("glue-rte: Entailed?\n")
    for split in ("train", "dev", "test"):
        write_lines(tmp_path / "data" / "glue-rte" / f"glue-rte_16_100_{split}.tsv",
                    [f"premise {split} [SEP] hypothesis\tentailment"])
    corpus = build(tmp_path, {"format": "crossfit", "path": str(tmp_path / "data"), "variant": "16_100",
                              "instructions": str(tmp_path / "instructions.yaml"),
                              "splits": {"train": "train", "dev": "validation"},
                              "tasks": [{"task": "glue-rte", "category": "nli"}]})
    rows = corpus.read_task("glue-rte").to_pylist()
    assert [(row["input"], row["split"]) for row in rows] == [("premise train [SEP] hypothesis", "train"),
                                                              ("premise dev [SEP] hypothesis", "validation")]


def test_unifiedskg_inputs_as_unifiedskg_feeds_its_models(tmp_path):
    folder = tmp_path / "skg"
    write_jsonl(folder / "cosql" / "train.jsonl", [
        {"text_in": "and their ages? || | list the singers", "struct_in": "| concert_singer | singer : name , age",
         "seq_out": "select name, age from singer"}])
    (folder / "instructions.yaml").write_text(yaml.safe_dump({t: f"Do {t}." for t in ("dart", "wikitq", "cosql")}))
    corpus = build(tmp_path, {"format": "unifiedskg", "path": str(SAMPLE / "unifiedskg"),
                              "instructions": str(folder / "instructions.yaml"),
                              "tasks": [{"task": "dart", "category": "d2t"}, {"task": "wikitq", "category": "qa"}]})
    dart = corpus.read_task("dart").to_pylist()
    assert dart[0]["input"] == ("structured knowledge: Mars Hill College : joined : 1973 | "
                                "Mars Hill College : location : Mars Hill, North Carolina")
    assert dart[4]["outputs"] == ["Bananaman, starring Bill Oddie, first aired in 1983."]
    assert [row["split"] for row in dart] == ["train"] * 4 + ["validation"] * 2 + ["test"] * 2
    assert (dart[0]["instruction_type"], dart[0]["definition"]) == ("keywords", "Do dart.")
    wikitq = corpus.read_task("wikitq").to_pylist()
    assert wikitq[0]["input"] == ("which city hosted in 1900? ; structured knowledge: col : year | city | country "
                                  "row 1 : 1896 | athens | greece row 2 : 1900 | paris | france row 3 : 1904 | "
                                  "st. louis | usa row 4 : 1908 | london | uk")
    corpus = build_corpus(CorpusConfig.model_validate({"sources": [{
        "format": "unifiedskg", "path": str(folder), "instructions": str(folder / "instructions.yaml"),
        "splits": {"train": None}, "tasks": [{"task": "cosql", "category": "sql"}]}]}), tmp_path / "conv")
    assert corpus.read_task("cosql").to_pylist()[0]["input"] == (
        "and their ages? ; structured knowledge: | concert_singer | singer : name , age ; context: | list the singers")
    assert model_input("", "x") == "structured knowledge: x"


def test_reasoning_targets_rationale_then_answer_or_answer_only(tmp_path):
    source = {"format": "reasoning", "path": str(SAMPLE / "reasoning"), "tasks": [{"dataset": "gsm8k"}]}
    rows = build(tmp_path, source).read_task("gsm8k").to_pylist()
    assert rows[1]["input"] == "A book costs $12 and a pen costs $3. How much do 2 books and 1 pen cost?"
    assert rows[1]["outputs"] == ["Two books cost 2 * 12 = 24 dollars.\nAdding the pen gives 24 + 3 = 27. "
                                  "The answer is 27."]
    assert (rows[1]["instruction_type"], rows[1]["definition"], rows[1]["category"]) == (
        "task", "Answer the following question by reasoning step by step.", "Reasoning")
    rows = build_corpus(CorpusConfig.model_validate({"sources": [{**source, "target": "answer"}]}),
                        tmp_path / "answers").read_task("gsm8k").to_pylist()
    assert (rows[1]["outputs"], rows[1]["definition"]) == (["27"], "Answer the following question.")
    write_jsonl(tmp_path / "cot" / "aqua_train.jsonl", [{"q": "1+1?", "why": "One and one make two.", "a": "2."}])
    rows = build_corpus(CorpusConfig.model_validate({"sources": [{
        "format": "reasoning", "path": str(tmp_path / "cot"), "fields": {"question": "q", "rationale": "why", "answer": "a"},
        "tasks": [{"dataset": "aqua", "category": "math"}]}]}), tmp_path / "jsonl").read_task("aqua").to_pylist()
    assert rows[0]["outputs"] == ["One and one make two. The answer is 2."]


def test_hf_nested_fields_lists_and_renderers(tmp_path):
    folder = tmp_path / "nested"
    write_jsonl(folder / "train.jsonl", [{
        "translation": {"de": "Hallo Welt", "en": "Hello world"},
        "table": {"header": ["name", "age"], "rows": [["ann", 31], ["bo", 4]]},
        "tripleset": [["Ann", "AGE", "31"]],
        "annotations": [{"source": "web", "text": "Ann is 31."}, {"source": "web", "text": "Ann's age is 31."}],
        "meta": {"year": 2020, "tags": ["a", "b"], "ok": True}}])
    instructions = tmp_path / "instructions.yaml"
    instructions.write_text(yaml.safe_dump({t: "Do it." for t in ("translate", "table", "meta", "json")}))

    def task(task_id, **fields):
        return {"task_id": task_id, "dataset": str(folder), "category": "c", **fields}

    corpus = build(tmp_path, {"format": "hf", "benchmark": "exmix", "instructions": str(instructions), "tasks": [
        task("translate", input="translation.de", output="translation.en"),
        task("table", input=["table", "tripleset"], output="annotations.text", render={"table": "table",
                                                                                      "tripleset": "triples"}),
        task("meta", input="meta", output="meta.tags"),
        task("json", input="meta", output="meta", render={"meta": "json"})]})
    assert corpus.read_task("translate").to_pylist()[0]["input"] == "Hallo Welt"
    table = corpus.read_task("table").to_pylist()[0]
    assert table["input"] == "table: col : name | age row 1 : ann | 31 row 2 : bo | 4\ntripleset: Ann : age : 31"
    assert table["outputs"] == ["Ann is 31.", "Ann's age is 31."]
    meta = corpus.read_task("meta").to_pylist()[0]
    assert (meta["input"], meta["outputs"]) == ("year: 2020, tags: a, b, ok: true", ["a", "b"])
    assert corpus.read_task("json").to_pylist()[0]["outputs"] == ['{"year": 2020, "tags": ["a", "b"], "ok": true}']


def test_renderers_name_the_field_of_a_bad_shape():
    assert render_value(["a", 1, None, 2.5], "lines", "f") == "a\n1\n\n2.5"
    with pytest.raises(TaskProblem, match="expected a table"):
        render_value(["not", "a", "table"], "table", "row 0.table")
    with pytest.raises(TaskProblem) as problem:
        render_value([["a", "b"]], "triples", "row 0.kg")
    assert problem.value.field == "row 0.kg[0]"


def test_source_splits_kept_positions_for_the_rest():
    ids = ["a", "a", "b", "c", "d", "e"]
    fixed = [None, None, "test", None, "validation", None]
    assert instance_splits(ids, 1, 1, fixed) == ["test", "test", "test", "validation", "validation", "train"]
