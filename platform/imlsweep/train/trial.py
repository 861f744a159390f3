"""One trial on Ray Train: check the config, build the mixture's dataset, run the DeepSpeed workers,
return what the trial produced.

Sweeps call `run_trial` inside a Ray Tune function trainable and pass Tune's report callback; the
trial directory (`imlsweep.trial_dir`) holds trial.yaml, metrics.jsonl, checkpoints and hf_model/.
A single-worker trial can run `in_process`: the worker loop runs in the calling process, so a reused
Tune actor pays for imports, worker start and process-group set-up once, not once per trial; such a
trial keeps no checkpoints (it reruns from the start if cut off).
Names are the trial's own (no timestamps), so a rerun of the same trial finds its earlier state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from imlsweep import storage
from imlsweep.errors import UserError
from imlsweep.train.checkpoints import checkpoint_config_kwargs
from imlsweep.train.config import TrainConfig, TrialConfig
from imlsweep.train.deepspeed_config import deepspeed_config
from imlsweep.train.worker import TRAIN_DATASET, WorkerSession, WorkerSetup, run_worker, train_loop_per_worker
from imlsweep.trial_dir import TrialDir


@dataclass
class TrialRun:
    """What running a trial produced; its trial directory holds the rest (metrics.json, predictions)."""

    name: str
    trial_dir: str  # the trial directory's location
    metrics: dict[str, Any]  # the final report
    checkpoint: str | None  # the latest checkpoint kept, if any
    hf_model_dir: str | None
    train_time_s: float
    train_tokens: int
    train_examples: int


def check_trial(config: TrialConfig) -> str:
    """Fail before any worker starts on what the config cannot run; returns the model kind."""
    from imlsweep.data.token_cache import cache_location, check_writable
    from imlsweep.data.tokenizer import load_tokenizer
    from imlsweep.train.model import cannot_checkpoint_activations, model_config, model_kind, unmatched_lora_targets

    hf_config = model_config(config.model)
    problem = cannot_checkpoint_activations(hf_config) if config.train.activation_checkpointing else None
    if problem:
        raise UserError(f"{config.name}: train.activation_checkpointing: {problem}")
    unmatched = unmatched_lora_targets(config.model)
    if unmatched:
        raise UserError("\n".join(f"{config.name}: {key}: {value!r} {why}" for key, value, why in unmatched))
    load_tokenizer(config.model.tokenizer_name)  # raises on a tokenizer without EOS
    check_writable(cache_location(config.token_cache, config.corpus))
    if config.init_from is not None and not storage.is_dir(config.init_from):
        raise UserError(f"init_from: {config.init_from!r} is not a folder")
    return model_kind(hf_config)


def optimizer_steps(rows: int, config: TrialConfig) -> int:
    """Optimizer steps over `epochs` passes of `rows` packed rows. Ray Train gives every worker the same
    number of rows; each pass ends with a partial micro-batch rather than dropping its last examples."""
    train = config.train
    micro_batches_per_epoch = -(-(rows // train.workers) // train.micro_batch_size)
    return micro_batches_per_epoch * (train.epochs or 1) // train.accumulation_steps


def total_steps(config: TrialConfig, dataset: Any) -> int:
    train = config.train
    if train.max_steps is not None:
        return train.max_steps
    steps = optimizer_steps(dataset.count(), config)
    if steps == 0:
        raise UserError(f"{config.name}: the mixture gives fewer packed rows than one optimizer step needs "
                        f"({train.rows_per_step})")
    return steps


def scaling_config_kwargs(train: TrainConfig) -> dict[str, Any]:
    """Keyword arguments of `ray.train.ScalingConfig`: what each worker holds (GPU fractions included)."""
    resources = {"CPU": train.cpus_per_worker} | ({"GPU": train.gpus_per_worker} if train.use_gpu else {})
    return {"num_workers": train.workers, "use_gpu": train.use_gpu, "resources_per_worker": resources}


def run_trial(config: TrialConfig, storage_path: str, *, callbacks: Sequence[Any] = (), dataset: Any = None,
              in_process: bool = False, on_report: Callable[[dict[str, Any]], None] | None = None) -> TrialRun:
    """Run one trial with a Ray Train `TorchTrainer`. `dataset` (a Ray Dataset of packed rows in the
    data -> train contract) replaces the one built from `config.corpus` + `config.mixture`.
    `in_process`: run the one worker's loop here instead (the caller holds its CPU/GPU); its reports
    go to `on_report` rather than to the Ray Train `callbacks`."""
    kind = check_trial(config)
    if in_process and config.train.workers != 1:
        raise UserError(f"{config.name}: an in-process trial has one worker, not {config.train.workers}")
    if dataset is None:
        dataset = build_dataset(config, kind)
    trial_dir = TrialDir.of(storage_path, config.name)
    trial_dir.write_config(config)
    setup = WorkerSetup(config=config, trial_dir=trial_dir, deepspeed=deepspeed_config(config.train),
                        total_steps=total_steps(config, dataset))
    if in_process:
        metrics, checkpoint = run_here(setup, dataset, on_report), None
    else:
        metrics, checkpoint = run_on_ray_train(setup, dataset, callbacks)
    return TrialRun(
        name=config.name, trial_dir=trial_dir.uri, metrics=metrics, checkpoint=checkpoint,
        hf_model_dir=trial_dir.hf_model if config.train.export_hf else None,
        train_time_s=float(metrics.get("train_time_s", 0.0)), train_tokens=int(metrics.get("train_tokens", 0)),
        train_examples=int(metrics.get("train_examples", 0)),
    )


def run_on_ray_train(setup: WorkerSetup, dataset: Any, callbacks: Sequence[Any]) -> tuple[dict[str, Any], str | None]:
    """The final metrics and the latest checkpoint kept."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from imlsweep.data.pipeline import train_data_config

    train = setup.config.train
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"setup": setup},
        torch_config=TorchConfig(backend="nccl" if train.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(**scaling_config_kwargs(train)),
        run_config=ray.train.RunConfig(
            name=setup.config.name, storage_path=setup.trial_dir.uri.rsplit("/", 1)[0],
            checkpoint_config=ray.train.CheckpointConfig(**checkpoint_config_kwargs(train, setup.config.eval)),
            failure_config=ray.train.FailureConfig(max_failures=train.worker_restarts),
            callbacks=list(callbacks) or None),
        datasets={TRAIN_DATASET: dataset},
        dataset_config=train_data_config(),
    )
    result = trainer.fit()
    return dict(result.metrics or {}), result.checkpoint.path if result.checkpoint is not None else None


def run_here(setup: WorkerSetup, dataset: Any, on_report: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    """The worker loop in this process, as the only worker; returns the last metrics it reported."""
    reported: list[dict[str, Any]] = [{}]

    def report(metrics: dict[str, Any], **_checkpoint: Any) -> None:
        reported[0] = metrics
        if on_report is not None:
            on_report(metrics)

    run_worker(setup, WorkerSession(rank=0, world_size=1, shard=dataset, checkpoint=None, report=report,
                                    keeps_checkpoints=False))
    return reported[0]


def build_dataset(config: TrialConfig, kind: str) -> Any:
    from imlsweep.data.pipeline import build_train_dataset

    dataset = build_train_dataset(config.mixture, config.corpus, config.model.tokenizer_name, kind,
                                  token_cache=config.token_cache)
    if (config.train.epochs or 1) > 1:
        # Several passes over the same rows (the sample-efficiency grid): compute them once, rather than
        # reading, rendering, tokenizing and packing the corpus again every epoch. One-pass streams
        # (OPT-IML's step-based runs) stay streamed.
        dataset = dataset.materialize()
    return dataset
