"""`imlsweep corpus build|stats|leakage` through the CLI entry point."""

from __future__ import annotations

import json

from imlsweep.cli import main


def test_build_then_stats(tmp_path, capsys, sample_corpus_config):
    out = tmp_path / "corpus"
    assert main(["corpus", "build", str(sample_corpus_config), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tasks"] == 31 and summary["tasks_by_split"] == {"test": 20, "train": 11}
    assert summary["examples"] == 1163 and summary["invalid"] == 0

    assert main(["corpus", "stats", str(out), "--json"]) == 0
    words = json.loads(capsys.readouterr().out)
    assert words["unit"] == "whitespace words"
    assert words["benchmarks"]["superni"] == json.loads((out / "stats.json").read_text())["benchmarks"]["superni"]
    assert set(words["splits"]) == {"train", "dev", "test"}

    assert main(["corpus", "stats", str(out), "--tokenizer", "tiny", "--json"]) == 0
    tokens = json.loads(capsys.readouterr().out)
    assert tokens["unit"] == "tokens (tiny)"
    assert tokens["benchmarks"]["superni"]["examples"] == words["benchmarks"]["superni"]["examples"]
    assert tokens["benchmarks"]["superni"]["prompt_len_mean"] != words["benchmarks"]["superni"]["prompt_len_mean"]

    assert main(["corpus", "stats", str(out)]) == 0
    assert "prompts/task" in capsys.readouterr().out


def test_bad_input_exits_2_with_the_message(tmp_path, capsys):
    assert main(["corpus", "build", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.yaml: no such file" in capsys.readouterr().err
    assert main(["corpus", "stats", str(tmp_path)]) == 2
    assert "not a built corpus" in capsys.readouterr().err


def test_leakage_command_writes_the_report(tmp_path, capsys, sample_corpus, ray_local):
    report_path = tmp_path / "leakage.json"
    assert main(["corpus", "leakage", str(sample_corpus), "--out", str(report_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(report_path.read_text())
    assert printed["threshold"] == 0.01 and printed["ngram"] == 13
    assert printed["flagged"] == [] and printed["pairs_checked"] == 11 * 20
