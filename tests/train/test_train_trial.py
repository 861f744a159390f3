"""Whole trials on a local Ray instance: Ray Train workers with real DeepSpeed engines on CPU (gloo),
the real data pipeline over the bundled SuperNI sample, checkpoints and exports on disk.

Three runs, shared by the tests below:
- `learn` (through `imlsweep train CONFIG --json`): 1 worker, tiny Llama, bf16, ZeRO 2, 12 steps over
  two epochs, keep the best 2 checkpoints, then a small evaluation on a held-out task.
- `zero2`: 2 workers, tiny OPT, fp32, ZeRO 2, no checkpoints.
- `zero3_restart`: the same trial with ZeRO 3; rank 0 raises after step 4 (test hook) and the trial
  resumes from its step-4 checkpoint mid-epoch. It must end where `zero2` ended: same steps, same
  losses, same weights, which only holds if the data stream resumed where it stopped. Then both
  workers generate on sharded weights (3 items each, in batches of 2; ranks finish their answers at
  different steps, so generation stays synced) and must predict what one process predicts from the
  exported weights.
- `in_process_1`, `in_process_2`: `learn` again, twice in this process without Ray Train workers (what
  a sweep's reused trainable does): the second must work on the first's process group.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from imlsweep.cli import main
from imlsweep.data.tokenizer import cached_tokenizer
from imlsweep.eval.config import EvalConfig
from imlsweep.eval.trial import evaluate_in_worker
from imlsweep.train.config import TrainConfig, TrialConfig, load_trial_config
from imlsweep.train.trial import build_dataset, run_trial, scaling_config_kwargs
from imlsweep.trial_dir import TrialDir

TASKS = ["task363_sst2_polarity_classification", "task109_smsspamcollection_spamsmsdetection",
         "task1346_glue_cola_grammatical_correctness_classification"]
MIXTURE = {"tasks": TASKS, "encoding": {"name": "no_instruction"}, "max_length": 128, "seed": 0}
EVAL_TASK = "task1344_glue_entailment_classification"  # held out: trained on by none of the runs
SHARDED_EVAL_TASKS = ["task1388_cb_entailment", "task619_ohsumed_abstract_title_generation"]
TWO_WORKERS = {"workers": 2, "precision": "fp32", "lr": 3e-3, "warmup_steps": 2, "micro_batch_size": 2,
               "max_steps": 6, "log_every": 2, "export_hf": True, "worker_restarts": 1}


def trial(sample_corpus, name: str, model: dict, train: dict) -> TrialConfig:
    return TrialConfig.model_validate({"name": name, "corpus": str(sample_corpus), "model": model,
                                       "mixture": MIXTURE, "train": train})


def train_command(config_path: Path, storage: Path) -> SimpleNamespace:
    """`imlsweep train CONFIG --storage DIR --json`, in this process (it reuses the running Ray)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["train", str(config_path), "--storage", str(storage), "--json"]) == 0
    return SimpleNamespace(**json.loads(out.getvalue()))


@pytest.fixture(scope="module")
def runs(ray_local, sample_corpus, tmp_path_factory):
    storage = tmp_path_factory.mktemp("trials")
    learn = {"name": "learn", "corpus": str(sample_corpus), "model": {"name": "tiny-llama"}, "mixture": MIXTURE,
             "train": {"precision": "bf16", "zero_stage": 2, "lr": 3e-3, "warmup_steps": 2, "micro_batch_size": 4,
                       "max_steps": 12, "log_every": 2, "checkpoint_every": 4, "keep": "best", "num_to_keep": 2,
                       "export_hf": True},
             "eval": {"tasks": [EVAL_TASK], "max_per_task": 4, "max_new_tokens": 4, "batch_size": 4}}
    config_path = storage / "learn.yaml"
    config_path.write_text(yaml.safe_dump(learn))
    results = {"learn": train_command(config_path, storage)}
    configs = {
        "zero2": trial(sample_corpus, "zero2", {"name": "tiny-opt", "dropout": 0.0},
                       {**TWO_WORKERS, "zero_stage": 2, "keep": "none", "cpus_per_worker": 1.5}),
        "zero3_restart": trial(sample_corpus, "zero3_restart", {"name": "tiny-opt", "dropout": 0.0},
                               {**TWO_WORKERS, "zero_stage": 3, "checkpoint_every": 2, "keep": "all",
                                "fail_at_step": 4}),
    }
    configs["zero3_restart"].eval = EvalConfig(tasks=SHARDED_EVAL_TASKS, max_per_task=3, max_new_tokens=4, batch_size=2)
    # zero2's data is computed first, so while it trains only its workers hold CPUs: Ray's accounting
    # of free CPUs, read while the trial runs, shows what each worker reserved
    zero2_data = build_dataset(configs["zero2"], "causal").materialize()
    with free_cpus_while(ray_local) as free_cpus:
        results["zero2"] = run_trial(configs["zero2"], str(storage), dataset=zero2_data)
    results["zero2_free_cpus"] = free_cpus
    results["zero3_restart"] = run_trial(configs["zero3_restart"], str(storage))
    reports: list[dict] = []
    for name in ("in_process_1", "in_process_2"):
        config = TrialConfig.model_validate({**learn, "name": name})
        results[name] = run_trial(config, str(storage), in_process=True, on_report=reports.append)
    results["in_process_reports"] = reports
    return storage, results


@contextlib.contextmanager
def free_cpus_while(ray):
    """The distinct values of Ray's free-CPU count, polled while the block runs."""
    seen: set[float] = set()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            seen.add(round(ray.available_resources().get("CPU", 0.0), 6))
            time.sleep(0.05)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def metric_lines(result) -> list[dict]:
    return [json.loads(line) for line in Path(result.trial_dir, "metrics.jsonl").read_text().splitlines()]


def checkpoint_dirs(result) -> list[str]:
    return sorted(path.name for path in Path(result.trial_dir).glob("checkpoint_*") if path.is_dir())


def test_loss_goes_down_and_metrics_are_logged(runs):
    _, results = runs
    result = results["learn"]
    lines = metric_lines(result)
    assert [line["step"] for line in lines] == [2, 4, 6, 8, 10, 12]
    assert lines[-1]["epoch"] == 1  # 9 micro-batches per epoch: the run wrapped around
    for line in lines:
        assert {"loss", "lr", "grad_norm", "tokens_per_s", "target_tokens_per_s", "train_tokens"} <= set(line)
        assert line["target_tokens_per_s"] < line["tokens_per_s"]
        assert line["attention_path"] == "dense_mask"  # CPU: FlexAttention has no backward there
    assert lines[-1]["loss"] < lines[0]["loss"] - 1.0
    assert all(later < earlier for earlier, later in zip([line["lr"] for line in lines], [line["lr"] for line in lines][1:]))
    assert result.metrics["step"] == 12 and result.metrics["training_finished"] is True
    assert result.train_examples > 0 and result.train_tokens > 0 and result.train_time_s > 0
    reloaded = load_trial_config(Path(result.trial_dir, "trial.yaml"))
    assert reloaded.model_dump() == TrialConfig.model_validate(reloaded.model_dump()).model_dump()
    assert reloaded.train.keep == "best" and reloaded.mixture.tasks == TASKS


def test_workers_hold_the_resources_the_trial_asks_for(runs, ray_local):
    """2 workers x cpus_per_worker 1.5 reach Ray Train's ScalingConfig: 3 of the 4 CPUs are taken."""
    total = ray_local.cluster_resources()["CPU"]
    assert min(runs[1]["zero2_free_cpus"]) == total - 2 * 1.5
    kwargs = scaling_config_kwargs(TrainConfig(workers=4, cpus_per_worker=2, gpus_per_worker=0.5))
    assert kwargs == {"num_workers": 4, "use_gpu": True, "resources_per_worker": {"CPU": 2, "GPU": 0.5}}
    import ray.train

    ray.train.ScalingConfig(**kwargs)  # a GPU fraction is a valid scaling config


def test_retention_leaves_what_it_promises(runs):
    _, results = runs
    losses = {line["step"]: line["loss"] for line in metric_lines(results["learn"])}
    best_two = sorted(sorted((4, 8, 12), key=lambda step: losses[step])[:2])
    assert checkpoint_dirs(results["learn"]) == [f"checkpoint_{step:06d}" for step in best_two]
    assert checkpoint_dirs(results["zero2"]) == []  # keep: none
    assert results["zero2"].checkpoint is None
    assert checkpoint_dirs(results["zero3_restart"]) == ["checkpoint_000002", "checkpoint_000004", "checkpoint_000006"]
    assert results["zero3_restart"].checkpoint.endswith("checkpoint_000006")


def test_evaluation_runs_after_training(runs):
    _, results = runs
    result = results["learn"]
    assert Path(result.trial_dir, "predictions.parquet").is_file()
    assert [task["task_id"] for task in TrialDir(result.trial_dir).task_metrics()] == [EVAL_TASK]
    assert "eval/combined" in result.metrics  # reported with the final metrics, for Tune and W&B
    assert not Path(results["zero2"].trial_dir, "metrics.json").exists()  # no eval suite, no evaluation


def test_zero3_workers_evaluate_like_one_process(runs, tmp_path):
    from transformers import AutoModelForCausalLM

    import pyarrow.parquet as pq

    result = runs[1]["zero3_restart"]
    sharded = pq.read_table(Path(result.trial_dir, "predictions.parquet")).to_pylist()
    config = TrialConfig.model_validate(yaml.safe_load(Path(result.trial_dir, "trial.yaml").read_text()))
    model = AutoModelForCausalLM.from_pretrained(result.hf_model_dir)
    evaluate_in_worker(model, cached_tokenizer(config.model.tokenizer_name), config, TrialDir(str(tmp_path)), 0, 1)
    single = pq.read_table(tmp_path / "predictions.parquet").to_pylist()
    assert {row["mode"] for row in single} == {"generation"} and len(single) == 6
    assert [(row["task_id"], row["prediction"]) for row in sharded] == [(row["task_id"], row["prediction"]) for row in single]


def test_restart_resumes_from_checkpoint_with_same_steps_and_data(runs):
    _, results = runs
    restarted, reference = metric_lines(results["zero3_restart"]), metric_lines(results["zero2"])
    assert [line["step"] for line in restarted] == [line["step"] for line in reference] == [2, 4, 6]
    for ours, theirs in zip(restarted, reference):
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-4)
        assert ours["train_examples"] == theirs["train_examples"]
    assert results["zero3_restart"].metrics["step"] == 6


def test_exported_weights_load_with_from_pretrained(runs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, results = runs
    loaded = {name: AutoModelForCausalLM.from_pretrained(results[name].hf_model_dir) for name in ("zero2", "zero3_restart")}
    learned = AutoModelForCausalLM.from_pretrained(results["learn"].hf_model_dir)
    assert learned.config.model_type == "llama" and learned.dtype == torch.bfloat16
    assert AutoTokenizer.from_pretrained(results["learn"].hf_model_dir).eos_token == "</s>"
    # ZeRO 3 gathers its shards into the same weights ZeRO 2 trained, restart and all
    zero2, zero3 = loaded["zero2"].state_dict(), loaded["zero3_restart"].state_dict()
    assert zero2.keys() == zero3.keys()
    for key in zero2:
        assert torch.allclose(zero2[key], zero3[key], atol=1e-4), key


def test_in_process_trials_train_like_ray_train_workers_and_keep_no_checkpoints(runs):
    _, results = runs
    reference = metric_lines(results["learn"])
    for name in ("in_process_1", "in_process_2"):
        result = results[name]
        lines = metric_lines(result)
        assert [line["step"] for line in lines] == [line["step"] for line in reference]
        for ours, theirs in zip(lines, reference):  # thread counts differ: bf16 sums need not match bit for bit
            assert ours["loss"] == pytest.approx(theirs["loss"], rel=2e-2)
            assert ours["train_examples"] == theirs["train_examples"]
        assert result.checkpoint is None and checkpoint_dirs(result) == []
        assert result.metrics["training_finished"] is True and "eval/combined" in result.metrics
        assert [task["task_id"] for task in TrialDir(result.trial_dir).task_metrics()] == [EVAL_TASK]
        assert Path(result.hf_model_dir, "config.json").is_file()
    reports = results["in_process_reports"]
    assert [report["step"] for report in reports] == [line["step"] for line in reference] * 2


def test_packed_t5_trial_trains_on_packed_pairs(ray_local, sample_corpus, tmp_path):
    config = TrialConfig.model_validate({
        "name": "t5_packed", "corpus": str(sample_corpus), "model": {"name": "tiny-t5", "dropout": 0.0},
        "mixture": {**MIXTURE, "max_source_length": 128, "max_target_length": 16, "pack_seq2seq": True},
        "train": {"precision": "fp32", "lr": 3e-3, "warmup_steps": 1, "micro_batch_size": 2, "max_steps": 4,
                  "log_every": 2, "keep": "none"}})
    result = run_trial(config, str(tmp_path), in_process=True)
    lines = metric_lines(result)
    assert [line["step"] for line in lines] == [2, 4]
    assert all(line["attention_path"] == "dense_mask" for line in lines)
    assert lines[-1]["train_examples"] > 4 * 2  # more examples than rows trained on: the pairs were packed
    assert lines[-1]["loss"] < lines[0]["loss"]
