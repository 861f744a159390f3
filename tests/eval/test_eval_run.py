"""`imlsweep eval run`: a saved checkpoint evaluated through a Ray Data actor pool gives the same
predictions as evaluating in-process; `imlsweep bench eval --quick` prints its figures."""

import json

import pyarrow.parquet as pq
import yaml

from imlsweep.cli import main
from imlsweep.corpus.store import Corpus
from imlsweep.data.encodings import EncodingConfig
from imlsweep.data.tokenizer import cached_tokenizer
from imlsweep.eval.config import EvalConfig
from imlsweep.eval.predict import predict_items
from imlsweep.trial_dir import EVAL_METRICS_FILE, PREDICTIONS_FILE
from imlsweep.eval.trial import eval_items
from imlsweep.train.model import ModelConfig, load_model

TASKS = ["task1388_cb_entailment", "task893_gap_fill_the_blank_coreference_resolution"]


def test_eval_run_with_an_actor_pool_equals_in_process(ray_local, sample_corpus, tmp_path, capsys):
    checkpoint = tmp_path / "checkpoint"
    model = load_model(ModelConfig(name="tiny-opt", dropout=0.0, seed=3)).eval()
    model.save_pretrained(checkpoint)
    eval_config = EvalConfig(tasks=TASKS, max_per_task=3, max_new_tokens=4, batch_size=2,
                             encoding=EncodingConfig(name="no_instruction"))
    config_path = tmp_path / "eval.yaml"
    config_path.write_text(yaml.safe_dump({
        "model": {"name": str(checkpoint), "tokenizer": "tiny", "dropout": None},
        "corpus": str(sample_corpus), "replicas": 2,
        "eval": eval_config.model_dump(mode="json", exclude_defaults=True)}))
    out = tmp_path / "out"
    assert main(["eval", "run", str(config_path), "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # Ray Data may log to stdout first
    assert printed == json.loads((out / EVAL_METRICS_FILE).read_text())
    rows = pq.read_table(out / PREDICTIONS_FILE).to_pylist()
    items = eval_items(Corpus.open(sample_corpus), eval_config, eval_config.encoding)
    expected = predict_items(model, cached_tokenizer("tiny"), items, eval_config)
    assert [(r["example_id"], r["prediction"]) for r in rows] == [(r["example_id"], r["prediction"]) for r in expected]
    assert printed["overall"]["n_eval"] == 6 and {t["task_id"] for t in printed["tasks"]} == set(TASKS)


def test_eval_run_reports_bad_config(tmp_path, capsys):
    config_path = tmp_path / "eval.yaml"
    config_path.write_text(yaml.safe_dump({"model": {"name": "tiny-llama"}, "corpus": "x", "eval": {"shots": [-1]},
                                           "replica": 2}))
    assert main(["eval", "run", str(config_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "eval.yaml: eval.shots" in err and "eval.yaml: replica" in err


def test_bench_eval_quick_prints_its_figures(capsys):
    assert main(["bench", "eval", "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"items_per_s", "harness_items_per_s", "speedup", "same_choices", "generation_tokens_per_s",
            "generation_tokens_per_s_one_at_a_time", "generation_speedup", "same_generations"} <= set(result)
    assert result["same_choices"] is True and result["same_generations"] is True
