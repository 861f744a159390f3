"""Nothing starts on bad input: `sweep plan` and `sweep run` check every trial against the corpus and this
machine, and fail with the spec file, the trial, the key and the bad value before Ray starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imlsweep.cli import main
from quickstart_spec import SWEEPS, quickstart_copy

TASKS = ["task1159_bard_analogical_reasoning_containers", "task828_copa_commonsense_cause_effect"]


def test_misspelled_task_fails_plan_and_run_before_ray(tmp_path, sample_corpus, capsys, ray_sessions):
    spec = quickstart_copy(tmp_path, sample_corpus, TASKS[1], "task999_nonexistent")
    storage = tmp_path / "runs"
    for command in ("plan", "run"):
        assert main(["sweep", command, str(spec), "--storage", str(storage)]) == 2
        error = capsys.readouterr().err
        assert (f"{spec}: trial single_task-inst_8-task999-r0 (and 23 more trials): mixture.tasks: "
                "'task999_nonexistent' is not a task of the corpus; did you mean") in error
        assert "eval.tasks: 'task999_nonexistent'" in error
    assert not ray_sessions
    assert not (storage / "quickstart").exists()  # no sweep directory, no trial


@pytest.mark.parametrize("old, new, message", [
    ("mixture:\n", "mixture:\n    category_subset: {size: 1, required: [Cause Effect Clasification]}\n",
     "mixture.category_subset.required: 'Cause Effect Clasification' is not a category of the corpus; "
     "did you mean 'Cause Effect Classification'?"),
    ("mixture:\n", "mixture:\n    addons: [{name: extra, fraction: 0.1, benchmark: superny}]\n",
     "mixture.addons.extra.benchmark: 'superny' is not a benchmark of the corpus; did you mean 'superni'?"),
    ("mixture:\n", "mixture:\n    benchmark_proportions: {supernii: 1.0}\n",
     "mixture.benchmark_proportions: 'supernii' is not a benchmark of the corpus; did you mean 'superni'?"),
    ("eval: {", "eval: {task_groups: {copa: ['task8*_copa']}, ",
     "eval.task_groups.copa: 'task8*_copa' matches no task of the corpus"),
    ("eval: {", "eval: {every_steps: 2, validation: {tasks: [task363_sst2_polarity_classification]}, ",
     "eval.validation.tasks: 'task363_sst2_polarity_classification' has no validation instances to validate on"),
    ("{name: tiny-llama}", "{name: 'facebook/opt 125m'}",
     "model.name: 'facebook/opt 125m' is neither a bundled tiny model, a local folder nor a well-formed hub id"),
    ("{name: tiny-llama}", "{name: tiny-llama, lora: {target_modules: [q_proj, v_prj]}}",
     "model.lora.target_modules: 'v_prj' matches no layer of 'llama' an adapter can wrap"),
])
def test_names_the_corpus_lacks_fail_plan_and_run(tmp_path, sample_corpus, capsys, ray_sessions, old, new, message):
    spec = quickstart_copy(tmp_path, sample_corpus, old, new)
    for command in ("plan", "run"):
        assert main(["sweep", command, str(spec), "--storage", str(tmp_path / "runs")]) == 2
        assert f"{spec}: trial single_task-inst_8-task1159-r0 (and 35 more trials): {message}" in capsys.readouterr().err
    assert not ray_sessions


def absent_cases(tmp_path: Path) -> list[tuple[str, str, str]]:
    empty = tmp_path / "empty_model"
    empty.mkdir()
    return [
        ("{name: tiny-llama}", "{name: facebook/opt-125mm}",
         "model.name: 'facebook/opt-125mm' is not in the local Hugging Face cache and the hub cannot be reached"),
        ("{name: tiny-llama}", f"{{name: {empty}}}", f"model.name: '{empty}' is a folder without config.json"),
        ("{name: tiny-llama}", "{name: tiny-llama, tokenizer: ./no/tokenizer}",
         "model.tokenizer: './no/tokenizer' is not a folder"),
        ("base:\n", f"base:\n  init_from: {empty}\n", f"init_from: '{empty}' is not a Hugging Face model folder"),
        ("mixture:\n", "mixture:\n    addons: [{name: chat, fraction: 0.1, texts: no_such_dialogues.jsonl}]\n",
         "mixture.addons.chat.texts: 'no_such_dialogues.jsonl' is not a file"),
    ]


@pytest.mark.parametrize("case", range(5))
def test_what_this_machine_lacks_is_listed_by_plan_and_fails_run(tmp_path, sample_corpus, capsys, ray_sessions, case):
    old, new, message = absent_cases(tmp_path)[case]
    spec = quickstart_copy(tmp_path, sample_corpus, old, new)
    assert main(["sweep", "plan", str(spec), "--storage", str(tmp_path / "runs"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["corpus_missing"] is None and len(summary["absent_here"]) == 1
    assert f"{spec}: trial single_task-inst_8-task1159-r0" in summary["absent_here"][0]
    assert message in summary["absent_here"][0]
    assert main(["sweep", "run", str(spec), "--storage", str(tmp_path / "runs")]) == 2
    assert message in capsys.readouterr().err
    assert not ray_sessions


def test_plan_without_a_buildable_corpus_says_so(tmp_path, capsys):
    """The OPT-IML corpus needs the published benchmarks' raw files: the plan names what is missing and
    estimates from the spec's figures."""
    assert main(["sweep", "plan", str(SWEEPS / "eps_mixing_rate.yaml"), "--storage", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "natural-instructions" in summary["corpus_missing"]
    assert summary["estimated_from"] == "spec" and summary["gpu_hours"] > 0
    assert not any((tmp_path / "corpora").glob("*"))  # the failed build left nothing behind


def test_plan_checks_against_a_given_corpus(tmp_path, sample_corpus, capsys):
    """--corpus: a built corpus stands in for the spec's (here: a corpus without the spec's tasks)."""
    spec = quickstart_copy(tmp_path, sample_corpus)
    assert main(["sweep", "plan", str(spec), "--corpus", str(sample_corpus), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["estimated_from"] == "corpus"
    other = tmp_path / "other.yaml"
    other.write_text(spec.read_text().replace(TASKS[0], "task1159_bard_analogical_reasoning_container"))
    assert main(["sweep", "plan", str(other), "--corpus", str(sample_corpus)]) == 2
    assert "did you mean 'task1159_bard_analogical_reasoning_containers'?" in capsys.readouterr().err
