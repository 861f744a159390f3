"""Bad input in the published formats: each defect names the file, the task (and template) and the row;
the default build writes nothing, and with --skip-invalid the rest of the corpus builds and the rejects
are listed in invalid.jsonl."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from published_files import SAMPLE, template, write_jsonl, write_lines, write_parquet, write_templates
from imlsweep.cli import main
from imlsweep.corpus.build import build_corpus
from imlsweep.corpus.config import CorpusConfig
from imlsweep.errors import UserError


@pytest.fixture
def published(tmp_path) -> Path:
    """Copies of the sample's PromptSource, P3, Flan, CrossFit, UnifiedSKG and reasoning folders, each with
    one defective task added (the valid tasks stay valid)."""
    root = tmp_path / "published"
    for name in ("promptsource", "p3", "flan", "crossfit", "unifiedskg", "reasoning"):
        shutil.copytree(SAMPLE / name, root / name)
    write_jsonl(root / "promptsource" / "data" / "broken" / "train.jsonl",
                [{"premise": "a", "hypothesis": "b"}, {"premise": "c", "hypothesis": "d"}])
    write_templates(root / "promptsource" / "templates", "misspelt", [
        template("fine", "{{premise}} ||| {{hypothesis}}"), template("typo", "{{premis}} ||| {{hypothesis}}")])
    write_templates(root / "promptsource" / "templates", "unclosed", [template("open", "{{ premise } ||| x")])
    for name in ("misspelt", "unclosed"):
        shutil.copytree(root / "promptsource" / "data" / "broken", root / "promptsource" / "data" / name)
    write_parquet(root / "p3" / "data" / "notargets_plain" / "train-00000-of-00001.parquet",
                  {"inputs_pretokenized": ["question one", "question two"]})
    write_jsonl(root / "flan" / "train-00002-of-00002.jsonl", [
        {"inputs": "x", "targets": "y", "task_name": "odd_task:1.0.0", "task_source": "Flan2021", "template_type": "zs_opt"},
        {"inputs": "x", "targets": "y", "task_name": "odd_task:1.0.0", "task_source": "Flan2021", "template_type": "zs_xyz"}])
    write_lines(root / "crossfit" / "ragged" / "ragged_train.tsv", ["good input\tgood output", "an input without output"])
    for split in ("dev", "test"):
        write_lines(root / "crossfit" / "ragged" / f"ragged_{split}.tsv", ["x\ty"])
    with open(root / "crossfit" / "instructions.yaml", "a", encoding="utf-8") as file:
        file.write('ragged: "Answer."\n')
    write_jsonl(root / "unifiedskg" / "notarget" / "train.jsonl", [{"text_in": "q", "struct_in": "| t | c"}])
    (root / "unifiedskg" / "instructions.yaml").write_text(yaml.safe_dump(
        {"dart": "Describe.", "notarget": "Answer."}))
    write_lines(root / "reasoning" / "short_train.tsv", ["a question\tits answer"])
    (root / "flan_tasks.yaml").write_text(yaml.safe_dump({"tasks": {
        name: {"category": "c"} for name in ("cosmos_qa:1.0.0", "gigaword:1.2.0", "copa:1.0.0", "sentiment140:1.0.0",
                                             "odd_task:1.0.0")}}))
    return root


def sources(root: Path) -> list[dict]:
    return [
        {"format": "promptsource", "templates": str(root / "promptsource/templates"),
         "data": str(root / "promptsource/data"),
         "tasks": [{"dataset": "ag_news", "category": "news"}, {"dataset": "misspelt", "category": "nli"},
                   {"dataset": "unclosed", "category": "nli"}]},
        {"format": "p3", "path": str(root / "p3/data"), "tasks": [
            {"dataset": "hellaswag", "category": "completion"}, {"dataset": "notargets", "category": "qa"}]},
        {"format": "flan", "path": str(root / "flan"), "metadata": str(root / "flan_tasks.yaml"),
         "task_sources": ["Flan2021"]},
        {"format": "crossfit", "path": str(root / "crossfit"), "instructions": str(root / "crossfit/instructions.yaml"),
         "tasks": [{"task": "ai2_arc", "category": "qa"}, {"task": "ragged", "category": "qa"}]},
        {"format": "unifiedskg", "path": str(root / "unifiedskg"), "instructions": str(root / "unifiedskg/instructions.yaml"),
         "tasks": [{"task": "dart", "category": "d2t"}, {"task": "notarget", "category": "qa"},
                   {"task": "spider", "category": "sql"}]},
        {"format": "reasoning", "path": str(root / "reasoning"), "tasks": [{"dataset": "creak"}, {"dataset": "short"}]},
    ]


def expected_rejects(root: Path) -> dict[str, tuple[str, str, str]]:
    """task id -> (file, field, words of the reason)."""
    templates = root / "promptsource/templates"
    return {
        "misspelt": (f"{templates}/misspelt/templates.yaml", "templates['typo'].jinja",
                     f"fails on train[0] of {root}/promptsource/data/misspelt/train.jsonl: UndefinedError: "
                     "'premis' is undefined"),
        "unclosed": (f"{templates}/unclosed/templates.yaml", "templates['open'].jinja", "Jinja syntax error at line 1"),
        "notargets": (f"{root}/p3/data/notargets_plain/train-00000-of-00001.parquet",
                      "notargets_plain: train[0].targets_pretokenized", "missing (a P3 subset without targets)"),
        "odd_task_1.0.0": (f"{root}/flan/train-00002-of-00002.jsonl", "row 1.template_type",
                           "unknown template type 'zs_xyz'"),
        "ragged": (f"{root}/crossfit/ragged/ragged_train.tsv", "line 2",
                   "expected the input and at least one output separated by tabs, got 1 column"),
        "notarget": (f"{root}/unifiedskg/notarget/train.jsonl", "train[0].seq_out", "missing"),
        "spider": (f"{root}/unifiedskg/instructions.yaml", "instruction", "missing from the instructions file"),
        "short": (f"{root}/reasoning/short_train.tsv", "line 1",
                  "expected question, answer, chain of thought separated by tabs, got 2 column(s)"),
    }


def test_each_defect_names_file_task_template_and_row_and_nothing_is_written(tmp_path, published):
    out = tmp_path / "out"
    with pytest.raises(UserError) as error:
        build_corpus(CorpusConfig.model_validate({"sources": sources(published)}), out)
    message = str(error.value)
    rejects = expected_rejects(published)
    assert f"{len(rejects)} invalid task(s)" in message
    for task_id, (file, field, reason) in rejects.items():
        assert f"{file}: task {task_id}: field {field}: {reason}" in message
    assert not out.exists()


def test_skip_invalid_builds_the_rest_and_lists_the_rejects(tmp_path, published, capsys):
    config = tmp_path / "corpus.yaml"
    config.write_text(yaml.safe_dump({"sources": sources(published)}))
    out = tmp_path / "out"
    assert main(["corpus", "build", str(config), "--out", str(out), "--skip-invalid", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rejects = expected_rejects(published)
    assert summary["invalid"] == len(rejects)
    listed = {item["task_id"]: item for item in map(json.loads, (out / "invalid.jsonl").read_text().splitlines())}
    assert set(listed) == set(rejects)
    for task_id, (file, field, reason) in rejects.items():
        assert (listed[task_id]["file"], listed[task_id]["field"]) == (file, field)
        assert reason in listed[task_id]["reason"]
    built = set(__import__("pyarrow.parquet", fromlist=["x"]).read_table(out / "manifest.parquet")["task_id"].to_pylist())
    assert {"ag_news", "hellaswag", "cosmos_qa_1.0.0", "ai2_arc", "dart", "creak"} <= built
    assert not built & set(rejects)


def test_promptsource_reserved_field_and_missing_split_are_named(tmp_path):
    write_jsonl(tmp_path / "data" / "odd" / "train.jsonl", [{"text": "a", "answer_choices": "x"}])
    write_templates(tmp_path / "templates", "odd", [template("t", "{{text}} ||| b")])
    config = CorpusConfig.model_validate({"sources": [{
        "format": "promptsource", "templates": str(tmp_path / "templates"), "data": str(tmp_path / "data"),
        "tasks": [{"dataset": "odd", "category": "c"},
                  {"dataset": "odd", "task_id": "odd_validation", "category": "c", "splits": {"validation": None}}]}]})
    with pytest.raises(UserError) as error:
        build_corpus(config, tmp_path / "out")
    assert "task odd: field templates['t'].jinja: fails on train[0]" in str(error.value)
    assert "has a field named answer_choices, which templates reserve" in str(error.value)
    assert (f"{tmp_path}/data/odd: task odd_validation: field splits.validation: no validation.jsonl, "
            "validation.parquet, validation-*.parquet or save_to_disk split 'validation' here") in str(error.value)


def test_hf_missing_nested_field_and_flan_missing_category_are_named(tmp_path):
    write_jsonl(tmp_path / "qa" / "train.jsonl", [{"question": "q", "answers": {"text": ["a"]}}])
    (tmp_path / "instructions.yaml").write_text("qa: Answer.\n")
    write_jsonl(tmp_path / "flan" / "train.jsonl", [{"inputs": "x", "targets": "y", "task_name": "new:1.0.0",
                                                     "task_source": "Flan2021", "template_type": "zs_noopt"}])
    (tmp_path / "flan_tasks.yaml").write_text("tasks: {}\n")
    config = CorpusConfig.model_validate({"sources": [
        {"format": "hf", "benchmark": "exmix", "instructions": str(tmp_path / "instructions.yaml"),
         "tasks": [{"task_id": "qa", "dataset": str(tmp_path / "qa"), "input": "question", "output": "answers.txt",
                    "category": "qa"}]},
        {"format": "flan", "path": str(tmp_path / "flan"), "metadata": str(tmp_path / "flan_tasks.yaml")}]})
    with pytest.raises(UserError) as error:
        build_corpus(config, tmp_path / "out")
    assert f"{tmp_path}/qa: task qa: field train[0].answers.txt: missing" in str(error.value)
    assert (f"{tmp_path}/flan_tasks.yaml: task new_1.0.0: field tasks['new:1.0.0'].category: missing (the export has "
            "no category)") in str(error.value)
