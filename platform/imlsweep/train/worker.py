"""The worker loop: one DeepSpeed engine per worker, packed batches from the worker's shard, metrics
and checkpoints through the session's report (`ray.train.report` on Ray Train workers), then the
trial's evaluation (when it has one). An in-process trial runs the same loop with a one-worker
session of its own: no checkpoints, reports straight to the caller (Ray Tune).

Every worker reports at the same steps (Ray Train gathers one report per worker). A restarted worker
loads the last checkpoint and skips the micro-batches of the current epoch it already trained on, so
no example is seen twice in an epoch because of the restart.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

from imlsweep.eval.results import scalar_metrics
from imlsweep.train import storage
from imlsweep.train.checkpoints import (Progress, checkpoint_dir_name, checkpoint_due, export_hf, load_state,
                                        save_state)
from imlsweep.train.config import TrainConfig, TrialConfig
from imlsweep.train.metrics import (Window, metrics_lines, model_flops_utilization, peak_flops, records_up_to,
                                    window_metrics)

TRAIN_DATASET = "train"


class InjectedFailure(RuntimeError):
    """Raised by the `train.fail_at_step` test hook."""


@dataclass
class WorkerSession:
    """What the loop needs from whoever runs it."""

    rank: int
    world_size: int
    shard: Any  # the worker's rows: a Ray Data shard or a whole Dataset
    checkpoint: Any  # a ray.train.Checkpoint to resume from, or None
    report: Callable[..., None]  # report(metrics, checkpoint=None, checkpoint_dir_name=None)
    keeps_checkpoints: bool


def train_loop_per_worker(setup: dict[str, Any]) -> None:
    """Ray Train's entry point on each worker."""
    import ray.train

    context = ray.train.get_context()
    run_worker(setup, WorkerSession(rank=context.get_world_rank(), world_size=context.get_world_size(),
                                    shard=ray.train.get_dataset_shard(TRAIN_DATASET),
                                    checkpoint=ray.train.get_checkpoint(), report=ray.train.report,
                                    keeps_checkpoints=True))


def run_worker(setup: dict[str, Any], session: WorkerSession) -> None:
    import torch

    from imlsweep.data.pipeline import iter_train_batches
    from imlsweep.data.tokenizer import load_tokenizer
    from imlsweep.eval.trial import evaluate_in_worker
    from imlsweep.train.engine import initialize_engine
    from imlsweep.train.loss import batch_loss
    from imlsweep.train.model import load_model, model_kind
    from imlsweep.train.schedule import lr_scheduler

    trial = TrialConfig.model_validate(setup["trial"])
    train = trial.train
    trial_dir: str = setup["trial_dir"]
    rank, workers = session.rank, session.world_size

    torch.manual_seed(train.seed)
    flash = train.use_gpu and flash_attention_available()
    model = load_model(trial.model, trial.init_from, attn_implementation="flash_attention_2" if flash else None)
    kind = model_kind(model.config)
    tokenizer = load_tokenizer(trial.model.tokenizer_name)
    engine, scheduler = initialize_engine(model, setup["deepspeed"], lr_scheduler(train, setup["total_steps"]),
                                          use_gpu=train.use_gpu)
    keeps_checkpoints = session.keeps_checkpoints and train.keep != "none"

    progress = Progress()
    checkpoint = session.checkpoint
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            progress = load_state(engine, directory)
    resumed = checkpoint is not None
    metrics_uri = storage.join(trial_dir, "metrics.jsonl")
    records = records_up_to(storage.read_text(metrics_uri), progress.step) if rank == 0 else []

    device = engine.device
    n_params = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    device_peak = peak_flops(torch.cuda.get_device_name()) if train.use_gpu else None
    window, window_start = Window(), time.perf_counter()
    start_time = time.perf_counter() - progress.train_time_s
    seq_len = 0

    last_metrics: dict[str, Any] = records[-1] if records else {}
    # the same on every rank, so every rank takes part in the same collectives
    logged_step = checkpointed_step = progress.step if resumed else -1

    def log(with_checkpoint: bool, extra: dict[str, Any]) -> None:
        """Reduce the window over workers, append to metrics.jsonl, report (with a checkpoint). A step
        already logged (the final report right after a periodic one) is reported again, not re-logged."""
        nonlocal window, window_start, last_metrics, logged_step, checkpointed_step
        if logged_step != progress.step:
            sums = torch.tensor(window.as_list(), dtype=torch.float64, device=device)
            torch.distributed.all_reduce(sums)
            sums = sums.tolist()
            progress.train_tokens += int(sums[2])
            progress.train_examples += int(sums[3])
            progress.train_time_s = time.perf_counter() - start_time
            last_metrics = {"step": progress.step, "epoch": progress.epoch,
                            **window_metrics(sums, workers, time.perf_counter() - window_start),
                            "lr": scheduler.get_last_lr()[0],
                            "grad_norm": float(engine.get_global_grad_norm() or 0.0),
                            "train_tokens": progress.train_tokens, "train_examples": progress.train_examples,
                            "train_time_s": progress.train_time_s}
            if device_peak:
                last_metrics["mfu"] = model_flops_utilization(n_params, model.config.num_hidden_layers,
                                                              model.config.hidden_size, seq_len,
                                                              last_metrics["tokens_per_s"], device_peak)
            if rank == 0:
                records.append(last_metrics)
                storage.write_text(metrics_uri, metrics_lines(records))
            window, window_start, logged_step = Window(), time.perf_counter(), progress.step
        with_checkpoint = with_checkpoint and checkpointed_step != progress.step
        report(session, engine, {**last_metrics, **extra}, progress, with_checkpoint)
        if with_checkpoint:
            checkpointed_step = progress.step

    shard = session.shard
    while not training_done(train, progress):
        batches = iter_train_batches(shard, train.micro_batch_size, kind, pad_token_id=tokenizer.pad_token_id,
                                     skip_batches=progress.batches_in_epoch, seed=train.seed + progress.epoch)
        for batch in batches:
            batch = {key: value.to(device) for key, value in batch.items()}
            loss, target_tokens = batch_loss(engine, batch, mask_dtype=model.dtype, document_attention=not flash)
            engine.backward(loss)
            boundary = engine.is_gradient_accumulation_boundary()
            engine.step()
            tokens, examples = batch_sizes(batch)
            window.add(loss.item(), int(target_tokens), tokens, examples)
            progress.batches_in_epoch += 1
            seq_len = batch["input_ids"].shape[1]
            if not boundary:
                continue
            progress.step += 1
            if training_done(train, progress):
                break
            if checkpoint_due(train, progress.step) or progress.step % train.log_every == 0:
                log(keeps_checkpoints and checkpoint_due(train, progress.step), {})
            if train.fail_at_step == progress.step and not resumed and rank == 0:
                raise InjectedFailure(f"train.fail_at_step: injected failure after step {progress.step}")
        else:  # the epoch's batches ran out
            if progress.batches_in_epoch == 0:
                raise RuntimeError(f"worker {rank}: its shard yields no batch of {train.micro_batch_size} rows")
            progress.epoch, progress.batches_in_epoch = progress.epoch + 1, 0

    if train.export_hf:
        with tempfile.TemporaryDirectory() as out_dir:
            if export_hf(engine, tokenizer, out_dir):
                storage.upload_dir(out_dir, storage.join(trial_dir, "hf_model"))
    evaluation = evaluate_in_worker(engine, tokenizer, trial, trial_dir, rank, workers)
    # Not "done": Ray Tune reads a reported `done` as the end of the trial and tears it down mid-fit.
    log(keeps_checkpoints, {"training_finished": True, **(scalar_metrics(evaluation) if evaluation else {})})


def training_done(train: TrainConfig, progress: Progress) -> bool:
    if train.max_steps is not None:
        return progress.step >= train.max_steps
    return progress.epoch >= (train.epochs or 1)


def report(session: WorkerSession, engine: Any, metrics: dict[str, Any], progress: Progress,
           with_checkpoint: bool) -> None:
    if not with_checkpoint:
        session.report(metrics)
        return
    import ray.train

    with tempfile.TemporaryDirectory() as directory:
        save_state(engine, directory, progress)
        session.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory),
                       checkpoint_dir_name=checkpoint_dir_name(progress.step))


def batch_sizes(batch: dict[str, Any]) -> tuple[int, int]:
    """Tokens that are not padding (encoder and decoder), and examples (documents) in a batch."""
    if "document_ids" in batch:
        document_ids = batch["document_ids"]
        return int((document_ids >= 0).sum()), int((document_ids.max(dim=1).values + 1).sum())
    return int(batch["attention_mask"].sum() + (batch["labels"] >= 0).sum()), int(batch["input_ids"].shape[0])


def flash_attention_available() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True
