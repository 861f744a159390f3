"""`imlsweep eval score`: the official JSONL formats, grouping, missing predictions and bad input."""

import json

import pytest

from imlsweep.cli import main
from imlsweep.errors import UserError
from imlsweep.eval.scorer import category_key, score_files


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def superni_files(superni_dir, tmp_path_factory):
    """References from real SuperNI instances (3 per task) and predictions that are the next
    instance's first output; the last instance of each task has no prediction."""
    directory = tmp_path_factory.mktemp("score")
    references, predictions = [], []
    for path in sorted((superni_dir / "tasks").glob("*.json"))[:12]:
        task = json.loads(path.read_text(encoding="utf-8"))
        instances = task["Instances"][:3]
        for index, instance in enumerate(instances):
            references.append({"id": instance["id"], "references": instance["output"], "task_id": path.stem,
                               "task_category": task["Categories"][0], "track": "default"})
            if index < len(instances) - 1:
                predictions.append({"id": instance["id"], "prediction": instances[index + 1]["output"][0]})
    return (write_jsonl(directory / "predictions.jsonl", predictions),
            write_jsonl(directory / "references.jsonl", references), references, predictions)


def test_scores_equal_the_official_scorer(superni_files, official):
    predictions_path, references_path, references, predictions = superni_files
    result = score_files(predictions_path, references_path)
    by_id = {row["id"]: row["prediction"] for row in predictions}
    preds = [by_id.get(ref["id"], "") for ref in references]
    golds = [ref["references"] for ref in references]
    expected = official.compute_metrics(preds, golds)
    assert result["exact_match"] == pytest.approx(expected["exact_match"], abs=1e-6)
    assert result["rougeL"] == pytest.approx(expected["rougeL"], abs=1e-6)
    per_task = official.compute_grouped_metrics(preds, golds, [ref["task_id"] for ref in references])
    per_category = official.compute_grouped_metrics(
        preds, golds, [category_key(ref["task_category"]) for ref in references])
    for task, values in result["per_task"].items():
        assert values["rougeL"] == pytest.approx(per_task[f"rougeL_for_{task}"], abs=1e-6)
        assert values["exact_match"] == pytest.approx(per_task[f"exact_match_for_{task}"], abs=1e-6)
    for category, values in result["per_category"].items():
        assert values["rougeL"] == pytest.approx(per_category[f"rougeL_for_{category}"], abs=1e-6)
    assert len(result["per_task"]) == 12
    assert result["missing_predictions"] and all(i not in by_id for i in result["missing_predictions"])
    assert result["official"]["rougeL_default_track"] == result["rougeL"]


def test_cli_json_and_text(superni_files, capsys):
    predictions_path, references_path, _, _ = superni_files
    assert main(["eval", "score", "--predictions", str(predictions_path), "--references", str(references_path),
                 "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert {"exact_match", "rougeL", "per_task", "per_category"} <= result.keys()
    assert set(next(iter(result["per_task"].values()))) == {"exact_match", "rougeL"}
    assert main(["eval", "score", "--predictions", str(predictions_path), "--references", str(references_path)]) == 0
    captured = capsys.readouterr()
    assert "rougeL" in captured.out and "No prediction for" in captured.err


@pytest.mark.parametrize("references, predictions, message", [
    ([{"id": "a", "references": ["x"]}], [{"id": "b", "prediction": "x"}], r"predictions.jsonl:1: prediction id 'b' has no reference"),
    ([{"id": "a", "references": "x"}], [{"id": "a", "prediction": "x"}], r"references.jsonl:1: id 'a': field 'references' must be"),
    ([{"id": "a"}], [{"id": "a", "prediction": "x"}], r"references.jsonl:1: id 'a': field 'references' must be"),
    ([{"id": "a", "references": []}], [{"id": "a", "prediction": "x"}], r"field 'references' must be a non-empty"),
    ([], [{"id": "a", "prediction": "x"}], r"references.jsonl: no references \(the file is empty\)"),
    ([{"id": "a", "references": ["x"]}], [], r"predictions.jsonl: no predictions \(the file is empty\)"),
    ([{"id": "a", "references": ["x"]}], [{"id": "a"}], r"predictions.jsonl:1: id 'a': field 'prediction' is missing"),
    ([{"id": "a", "references": ["x"]}, {"id": "a", "references": ["y"]}], [{"id": "a", "prediction": "x"}],
     r"references.jsonl:2: id 'a' appears twice"),
    ([{"id": "a", "references": ["x"], "track": "other"}], [{"id": "a", "prediction": "x"}], r"field 'track' must be"),
])
def test_bad_input_gives_clear_errors(tmp_path, references, predictions, message):
    references_path = write_jsonl(tmp_path / "references.jsonl", references)
    predictions_path = write_jsonl(tmp_path / "predictions.jsonl", predictions)
    with pytest.raises(UserError, match=message):
        score_files(predictions_path, references_path)


def test_not_json_and_missing_file(tmp_path, capsys):
    references_path = tmp_path / "references.jsonl"
    references_path.write_text('{"id": "a", "references": ["x"]}\n{oops\n')
    with pytest.raises(UserError, match=r"references.jsonl:2: not valid JSON"):
        score_files(tmp_path / "p.jsonl", references_path)
    assert main(["eval", "score", "--predictions", str(tmp_path / "nope.jsonl"),
                 "--references", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_xlingual_track_uses_gpt2_style_tokens(tmp_path, official):
    from rouge_score import rouge_scorer
    from transformers import AutoTokenizer

    from imlsweep.assets import TINY_TOKENIZER_DIR

    bpe = AutoTokenizer.from_pretrained(str(TINY_TOKENIZER_DIR))

    class GPTTokenizer:  # the official scorer's xlingual tokenizer, on a local byte-level BPE
        def tokenize(self, s):
            return [t.lstrip("Ġ") for t in bpe.tokenize(s)]

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=GPTTokenizer())
    references = [{"id": "a", "references": ["Le chat est noir.", "un chat noir"], "track": "xlingual"},
                  {"id": "b", "references": ["the cat"], "track": "default"}]
    predictions = [{"id": "a", "prediction": "le chat noir"}, {"id": "b", "prediction": "The cat!"}]
    result = score_files(write_jsonl(tmp_path / "p.jsonl", predictions), write_jsonl(tmp_path / "r.jsonl", references),
                         xlingual_tokenizer=str(TINY_TOKENIZER_DIR))
    expected = 100 * max(scorer.score(prediction="le chat noir", target=ref)["rougeL"].fmeasure
                         for ref in references[0]["references"])
    assert result["tracks"]["xlingual"]["rougeL"] == pytest.approx(round(expected, 4), abs=1e-6)
    assert result["rougeL"] == 100.0 and result["official"]["rougeL_xlingual_track"] == result["tracks"]["xlingual"]["rougeL"]
    with pytest.raises(UserError, match="xlingual track needs the GPT-2 tokenizer"):
        score_files(tmp_path / "p.jsonl", tmp_path / "r.jsonl", xlingual_tokenizer=str(tmp_path / "missing"))
