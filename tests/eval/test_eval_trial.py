"""The trial hook: items from a built corpus, strided shares, rank 0 writing predictions.parquet and
metrics.json."""

import json

import pyarrow.parquet as pq
import pytest

from imlsweep.data.mixture import MixtureConfig
from imlsweep.data.tokenizer import cached_tokenizer
from imlsweep.eval.config import EvalConfig
from imlsweep.eval.predict import EvalItem, predict_items, task_metrics
from imlsweep.eval.results import evaluation_metrics, scalar_metrics, write_evaluation
from imlsweep.eval.trial import evaluate_in_worker, worker_share
from imlsweep.train.config import TrialConfig
from imlsweep.train.model import ModelConfig, load_model
from imlsweep.trial_dir import EVAL_METRICS_FILE, PREDICTIONS_FILE, TrialDir

TASKS = ["task1388_cb_entailment", "task1390_wscfixed_coreference", "task619_ohsumed_abstract_title_generation"]


@pytest.fixture(scope="module")
def trial(sample_corpus):
    return TrialConfig(name="eval_trial", corpus=str(sample_corpus), model=ModelConfig(name="tiny-llama", dropout=0.0),
                       mixture=MixtureConfig(), eval=EvalConfig(tasks=TASKS, max_per_task=3, shots=[0, 1],
                                                                max_new_tokens=4, batch_size=4))


@pytest.fixture(scope="module")
def single_process(trial, tmp_path_factory):
    directory = tmp_path_factory.mktemp("single")
    model = load_model(trial.model)
    metrics = evaluate_in_worker(model, cached_tokenizer("tiny"), trial, TrialDir(str(directory)), 0, 1)
    return directory, metrics


def test_writes_predictions_and_every_aggregation_level(single_process):
    directory, metrics = single_process
    assert json.loads((directory / EVAL_METRICS_FILE).read_text()) == metrics
    assert {"overall", "tasks", "per_category", "per_level", "per_shots", "combined", "sample_efficiency"} <= set(metrics)
    assert len(metrics["tasks"]) == 6  # 3 tasks x 2 shot settings
    task = metrics["tasks"][0]
    assert set(task) == {"task_id", "shots", "benchmark", "category", "level", "rougeL", "exact_match", "accuracy",
                         "score", "n_eval"}
    assert task["accuracy"] is None and task["score"] == task["rougeL"] and task["n_eval"] == 3
    assert set(metrics["per_shots"]) == {"0", "1"}
    table = pq.read_table(directory / PREDICTIONS_FILE)
    assert table.num_rows == 18
    assert {"example_id", "task_id", "prompt_hash", "prediction", "references", "rougeL", "logprob_sum"} <= set(
        table.column_names)
    assert set(table.column("task_id").to_pylist()) == set(TASKS)
    # a task with a train pool gets a demonstration at 1 shot, so its prompts differ from the 0-shot ones
    rows = [row for row in table.to_pylist() if row["task_id"] == "task1388_cb_entailment"]
    hashes = {(row["example_id"], row["shots"]): row["prompt_hash"] for row in rows}
    assert all(hashes[(e, 0)] != hashes[(e, 1)] for e, _ in hashes)
    assert "eval/combined" in scalar_metrics(metrics)


def test_no_eval_config_means_nothing_to_do(trial, tmp_path):
    assert evaluate_in_worker(None, None, trial.model_copy(update={"eval": None}), TrialDir(str(tmp_path)), 0, 1) is None


def make_item(index, candidates=None, task="t1"):
    return EvalItem(example_id=f"e{index}", task_id=task, benchmark="b", category="c", level="fully_held_out",
                    shots=0, prompt=f"Question {index}: is it good?\nAnswer: ", references=["yes"], candidates=candidates)


def test_worker_shares_cover_every_item_once_with_equal_batch_counts():
    items = [make_item(i, ["yes", "no"] if i % 3 == 0 else None) for i in range(10)]  # 4 rank, 6 generation
    config = EvalConfig(batch_size=2)
    shares = [worker_share(items, config, rank, 3) for rank in range(3)]
    owned = sorted(index for share in shares for index in share[0])
    assert owned == list(range(10))
    assert {share[2] for share in shares} == {(1, 1)}  # ceil(ceil(4/3)/2), ceil(ceil(6/3)/2)
    lonely = worker_share(items[:1], config, 1, 2)  # rank 1 owns nothing but must still run a batch
    assert lonely[0] == [] and len(lonely[1]) == 1 and lonely[2] == (1, 0)


def test_mixed_rank_and_generation_items(tmp_path):
    tokenizer = cached_tokenizer("tiny")
    model = load_model(ModelConfig(name="tiny-llama", dropout=0.0)).eval()
    items = [make_item(0, ["yes", "no"]), make_item(1), make_item(2, ["no", "maybe", "yes"], task="t2")]
    config = EvalConfig(max_new_tokens=3, batch_size=2)
    rows = predict_items(model, tokenizer, items, config)
    assert [row["mode"] for row in rows] == ["rank", "generation", "rank"]
    assert rows[0]["prediction"] in ["yes", "no"] and len(rows[2]["logprob_sum"]) == 3
    assert rows[0]["correct"] == (rows[0]["prediction"] == "yes")
    tasks = {task["task_id"]: task for task in task_metrics(rows)}
    assert tasks["t2"]["accuracy"] == 100.0 * rows[2]["correct"] and tasks["t2"]["score"] == tasks["t2"]["accuracy"]
    metrics = evaluation_metrics(rows, config)
    write_evaluation(TrialDir(str(tmp_path)), rows, metrics)
    table = pq.read_table(tmp_path / PREDICTIONS_FILE)
    assert table.column("candidates").to_pylist()[1] is None and table.column("chosen_sum").to_pylist()[1] is None
    with pytest.raises(ValueError, match="has no candidates"):
        predict_items(model, tokenizer, [make_item(3)], config.model_copy(update={"mode": "rank"}))
