"""`imlsweep mixture explain|preview` and `imlsweep bench data --quick` end to end."""

from __future__ import annotations

import json

import pytest

from imlsweep.cli import main


@pytest.fixture()
def mixture_file(tmp_path):
    path = tmp_path / "mixture.yaml"
    path.write_text("eps: 30\ntotal_examples: 100\nencoding:\n  name: bipartite\ndemonstrations:\n  shots: 1\n")
    return path


def test_explain_json_lists_every_task(sample_corpus, mixture_file, capsys):
    assert main(["mixture", "explain", str(mixture_file), "--corpus", str(sample_corpus), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"task_id", "benchmark", "rate", "expected_examples", "capped", "share"} <= set(rows[0])
    assert len(rows) == 11 and sum(r["expected_examples"] for r in rows) == 100
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert all(r["capped"] == (r["sampled"] > 30) for r in rows)


def test_explain_human_output(sample_corpus, mixture_file, capsys):
    assert main(["mixture", "explain", str(mixture_file), "--corpus", str(sample_corpus)]) == 0
    assert "capped tasks" in capsys.readouterr().out


def test_preview_json_one_object_per_line(sample_corpus, mixture_file, capsys):
    assert main(["mixture", "preview", str(mixture_file), "--corpus", str(sample_corpus), "-n", "3", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    examples = [json.loads(line) for line in lines]
    assert len(examples) == 3 and [e["position"] for e in examples] == [0, 1, 2]
    assert all({"task_id", "example_id", "source", "target", "encoding"} <= set(e) for e in examples)
    assert all(e["encoding"] == "bipartite" and e["target"].startswith(" ") for e in examples)


def test_bad_mixture_names_file_and_key(sample_corpus, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("eps: 30\nencoding:\n  nmae: bipartite\n")
    assert main(["mixture", "explain", str(path), "--corpus", str(sample_corpus)]) == 2
    assert f"{path}: encoding.nmae" in capsys.readouterr().err
    path.write_text("tasks: [task_missing]\n")
    assert main(["mixture", "explain", str(path), "--corpus", str(sample_corpus)]) == 2
    assert "mixture.tasks: not in the corpus: task_missing" in capsys.readouterr().err


def test_bench_data_quick_prints_the_figures(ray_local, tmp_path, capsys):
    assert main(["bench", "data", "--quick", "--json", "--workdir", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("pipeline_tokens_per_s", "tokenizer_tokens_per_s", "baseline_tokens_per_s", "packing_efficiency",
                "peak_rss_mb"):
        assert result[key] > 0
    assert result["packing_efficiency"] <= 1.0
    assert [row["examples"] for row in result["scaling"]] == [300, 600]
    for row in result["scaling"]:
        assert row["peak_rss_mb"] >= row["peak_pss_mb"] > 0  # a shared page counts once in the PSS sum
        assert 0 < row["first_row_s"] <= row["total_s"] and row["tokens_per_s"] > 0
    for key in ("cached_speedup", "sweep_data_s_cached", "sweep_data_s_uncached"):
        assert result[key] > 0
