"""The worker loop: one DeepSpeed engine per worker, packed batches from the worker's shard, metrics
and checkpoints through the session's report (`ray.train.report` on Ray Train workers), then the
trial's evaluation (when it has one). An in-process trial runs the same loop with a one-worker
session of its own: no checkpoints, reports straight to the caller (Ray Tune).

`run_worker` reads top to bottom: set up, train (each step, then the decision to log, validate,
checkpoint and report), export, evaluate, report the end. A trial with `eval.every_steps` scores its
validation instances at those steps and after the last one; the val/... scores join that step's line
of metrics.jsonl and its report (so Tune schedulers and `keep: best` can use them), and the final report
carries the last ones. Every worker reports at the same steps (Ray Train gathers one
report per worker). A restarted worker loads the last checkpoint and skips the micro-batches of the
current epoch it already trained on, so no example is seen twice in an epoch because of the restart.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable

from imlsweep.train.checkpoints import Progress, checkpoint_due, export_hf, load_state, save_state
from imlsweep.train.config import TrainConfig, TrialConfig
from imlsweep.train.metrics import (Window, model_flops_utilization, peak_flops, peak_memory_bytes, records_up_to,
                                    window_metrics)
from imlsweep.trial_dir import TrialDir, checkpoint_dir_name

TRAIN_DATASET = "train"


class InjectedFailure(RuntimeError):
    """Raised by the `train.fail_at_step` test hook."""


@dataclass
class WorkerSetup:
    """What the driver hands every worker of a trial."""

    config: TrialConfig
    trial_dir: TrialDir
    deepspeed: dict[str, Any]  # the derived DeepSpeed config
    total_steps: int  # optimizer steps the schedule spans


@dataclass
class WorkerSession:
    """What the loop needs from whoever runs it."""

    rank: int
    world_size: int
    shard: Any  # the worker's rows: a Ray Data shard or a whole Dataset
    checkpoint: Any  # a ray.train.Checkpoint to resume from, or None
    report: Callable[..., None]  # report(metrics, checkpoint=None, checkpoint_dir_name=None)
    keeps_checkpoints: bool


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train's entry point on each worker."""
    import ray.train

    context = ray.train.get_context()
    run_worker(loop_config["setup"], WorkerSession(
        rank=context.get_world_rank(), world_size=context.get_world_size(),
        shard=ray.train.get_dataset_shard(TRAIN_DATASET), checkpoint=ray.train.get_checkpoint(),
        report=ray.train.report, keeps_checkpoints=True))


def run_worker(setup: WorkerSetup, session: WorkerSession) -> None:
    run = WorkerRun(setup, session)
    for batch in run.batches():
        if not run.train_step(batch):
            continue  # inside a gradient accumulation
        if run.done():
            break
        if run.log_due():
            run.log_and_report(with_checkpoint=run.checkpoint_due())
        run.inject_failure_if_asked()
    run.export()
    evaluation = run.evaluate()
    run.report_end(evaluation)


class WorkerRun:
    """One worker's training: the engine, where training stands, and the metrics since the last report."""

    def __init__(self, setup: WorkerSetup, session: WorkerSession):
        import torch

        from imlsweep.data.tokenizer import load_tokenizer
        from imlsweep.train.engine import initialize_engine
        from imlsweep.train.attention import IMPLEMENTATIONS
        from imlsweep.train.lora import apply_lora
        from imlsweep.train.partition import partitioned_loading
        from imlsweep.train.model import (attention_path, enable_activation_checkpointing, load_model, model_config,
                                          model_kind)
        from imlsweep.train.schedule import lr_scheduler

        self.setup, self.session = setup, session
        self.config: TrialConfig = setup.config
        self.train: TrainConfig = setup.config.train
        torch.manual_seed(self.train.seed)
        # the same on every rank: the path depends on the model, the trial's devices and what is installed
        self.attention = attention_path(model_config(self.config.model), self.train.use_gpu)
        with partitioned_loading(setup.deepspeed, self.train.use_gpu):  # ZeRO-3: no rank holds the whole model
            self.model = load_model(self.config.model, self.config.init_from,
                                    attn_implementation=IMPLEMENTATIONS[self.attention])
        self.model.train()  # from_pretrained returns a model in eval mode: no dropout, no activation checkpointing
        if self.train.activation_checkpointing:
            enable_activation_checkpointing(self.model)
        self.lora = self.config.model.lora
        if self.lora is not None:
            self.model = apply_lora(self.model, self.lora)
        self.kind = model_kind(self.model.config)
        self.tokenizer = load_tokenizer(self.config.model.tokenizer_name)
        self.engine, self.scheduler = initialize_engine(self.model, setup.deepspeed,
                                                        lr_scheduler(self.train, setup.total_steps),
                                                        use_gpu=self.train.use_gpu)
        self.keeps_checkpoints = session.keeps_checkpoints and self.train.keep != "none"
        self.progress = Progress()
        self.resumed = session.checkpoint is not None
        if self.resumed:
            with session.checkpoint.as_directory() as directory:
                self.progress = load_state(self.engine, directory, adapter_only=self.lora is not None)
        # in every later report: this attempt went on from that step's checkpoint (a worker or node was lost)
        self.resumed_from_step = self.progress.step if self.resumed else None
        # rank 0 keeps metrics.jsonl: an earlier attempt's lines up to the step training resumes from
        self.records = records_up_to(setup.trial_dir.read_metrics_log(), self.progress.step) if session.rank == 0 else []
        self.last_metrics: dict[str, Any] = self.records[-1] if self.records else {}
        # the same on every rank, so every rank takes part in the same collectives
        self.logged_step = self.checkpointed_step = self.progress.step if self.resumed else -1
        self.window, self.window_start = Window(), time.perf_counter()
        self.start_time = time.perf_counter() - self.progress.train_time_s
        self.n_params = sum(getattr(p, "ds_numel", p.numel()) for p in self.model.parameters())
        self.device_peak = peak_flops(torch.cuda.get_device_name()) if self.train.use_gpu else None
        self.seq_len = 0
        self.validation = validation_of(self.config)
        self.validated_step = self.progress.step if self.resumed else -1

    # -- the data ----------------------------------------------------------------------------------------

    def batches(self) -> Iterator[dict[str, Any]]:
        """Micro-batches on the engine's device, epoch after epoch, from where training stands; stops
        when the epochs are done (a run by steps stops itself with `done`)."""
        from imlsweep.data.pipeline import iter_train_batches

        while not self.done():
            for batch in iter_train_batches(self.session.shard, self.train.micro_batch_size, self.kind,
                                            pad_token_id=self.tokenizer.pad_token_id,
                                            skip_batches=self.progress.batches_in_epoch,
                                            seed=self.train.seed + self.progress.epoch,
                                            pack_seq2seq=self.config.mixture.pack_seq2seq):
                yield {key: value.to(self.engine.device) for key, value in batch.items()}
            if self.progress.batches_in_epoch == 0:
                raise RuntimeError(f"worker {self.session.rank}: its shard yields no batch of "
                                   f"{self.train.micro_batch_size} rows")
            self.progress.epoch, self.progress.batches_in_epoch = self.progress.epoch + 1, 0

    # -- the step ----------------------------------------------------------------------------------------

    def train_step(self, batch: dict[str, Any]) -> bool:
        """Forward, backward and (at the end of an accumulation) the optimizer step; True when the
        optimizer stepped."""
        from imlsweep.train.loss import batch_loss

        loss, target_tokens = batch_loss(self.engine, batch, attention=self.attention, mask_dtype=self.model.dtype)
        self.engine.backward(loss)
        boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.step()
        tokens, examples = batch_sizes(batch)
        self.window.add(loss.item(), int(target_tokens), tokens, examples)
        self.progress.batches_in_epoch += 1
        self.seq_len = batch["input_ids"].shape[1]
        if boundary:
            self.progress.step += 1
        return boundary

    def done(self) -> bool:
        return training_done(self.train, self.progress)

    # -- the decisions after a step ----------------------------------------------------------------------

    def checkpoint_due(self) -> bool:
        return self.keeps_checkpoints and checkpoint_due(self.train, self.progress.step)

    def log_due(self) -> bool:
        return (self.checkpoint_due() or self.progress.step % self.train.log_every == 0
                or self.validation_due(final=False))

    def validation_due(self, final: bool) -> bool:
        return (self.validation is not None and self.validated_step != self.progress.step
                and self.validation.due(self.progress.step, final))

    def inject_failure_if_asked(self) -> None:
        if self.train.fail_at_step == self.progress.step and not self.resumed and self.session.rank == 0:
            raise InjectedFailure(f"train.fail_at_step: injected failure after step {self.progress.step}")

    # -- logging, checkpointing, reporting ---------------------------------------------------------------

    def close_window(self, final: bool = False) -> None:
        """Reduce the metrics since the last report over the workers, validate when due; rank 0 appends
        them to metrics.jsonl. A step already logged (the final report right after a periodic one) is not
        logged again, only validated if it was not."""
        logged = self.logged_step != self.progress.step
        if logged:
            self.reduce_window()
        if self.validation_due(final):
            scores = self.validation.score(self.engine, self.tokenizer, self.session.rank, self.session.world_size)
            self.validated_step = self.progress.step
            self.last_metrics = {**self.last_metrics, **scores}
            if self.records and self.records[-1].get("step") == self.progress.step:
                self.records[-1].update(scores)
            logged = True
        if logged and self.session.rank == 0:
            self.setup.trial_dir.write_metrics_log(self.records)

    def reduce_window(self) -> None:
        import torch

        sums = torch.tensor(self.window.as_list(), dtype=torch.float64, device=self.engine.device)
        torch.distributed.all_reduce(sums)
        sums = sums.tolist()
        progress = self.progress
        progress.train_tokens += int(sums[2])
        progress.train_examples += int(sums[3])
        progress.train_time_s = time.perf_counter() - self.start_time
        metrics = {"step": progress.step, "epoch": progress.epoch,
                   **window_metrics(sums, self.session.world_size, time.perf_counter() - self.window_start),
                   "lr": self.scheduler.get_last_lr()[0],
                   "grad_norm": float(self.engine.get_global_grad_norm() or 0.0),
                   "train_tokens": progress.train_tokens, "train_examples": progress.train_examples,
                   "train_time_s": progress.train_time_s, "attention_path": self.attention}
        if self.resumed_from_step is not None:
            metrics["resumed_from_step"] = self.resumed_from_step
        peaks = torch.tensor(peak_memory_bytes(self.train.use_gpu), dtype=torch.float64, device=self.engine.device)
        torch.distributed.all_reduce(peaks, op=torch.distributed.ReduceOp.MAX)  # the fullest worker's
        metrics["peak_host_memory_gb"] = peaks[0].item() / 2**30
        if self.train.use_gpu:
            metrics["peak_gpu_memory_gb"] = peaks[1].item() / 2**30
        if self.device_peak:
            metrics["mfu"] = model_flops_utilization(self.n_params, self.model.config.num_hidden_layers,
                                                     self.model.config.hidden_size, self.seq_len,
                                                     metrics["tokens_per_s"], self.device_peak)
        if self.session.rank == 0:
            self.records.append(metrics)
        self.last_metrics = metrics
        self.window, self.window_start, self.logged_step = Window(), time.perf_counter(), progress.step

    def log_and_report(self, with_checkpoint: bool, extra: dict[str, Any] | None = None, final: bool = False) -> None:
        self.close_window(final)
        metrics = {**self.last_metrics, **(extra or {})}
        if not with_checkpoint or self.checkpointed_step == self.progress.step:
            self.session.report(metrics)
            return
        import ray.train

        with tempfile.TemporaryDirectory() as directory:
            save_state(self.engine, directory, self.progress, adapter_only=self.lora is not None)
            self.session.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory),
                                checkpoint_dir_name=checkpoint_dir_name(self.progress.step))
        self.checkpointed_step = self.progress.step

    # -- after training ----------------------------------------------------------------------------------

    def export(self) -> None:
        """The final weights as a Hugging Face folder, gathered on rank 0 (every rank takes part)."""
        if not self.train.export_hf:
            return
        from imlsweep import storage

        with tempfile.TemporaryDirectory() as out_dir:
            if export_hf(self.engine, self.tokenizer, out_dir, self.lora,
                         base=self.config.init_from or self.config.model.name):
                storage.upload_dir(out_dir, self.setup.trial_dir.hf_model)

    def evaluate(self) -> dict[str, Any] | None:
        from imlsweep.eval.trial import evaluate_in_worker

        return evaluate_in_worker(self.engine, self.tokenizer, self.config, self.setup.trial_dir,
                                  self.session.rank, self.session.world_size)

    def report_end(self, evaluation: dict[str, Any] | None) -> None:
        from imlsweep.eval.results import scalar_metrics

        # Not "done": Ray Tune reads a reported `done` as the end of the trial and tears it down mid-fit.
        self.log_and_report(self.keeps_checkpoints, {"training_finished": True,
                                                     **(scalar_metrics(evaluation) if evaluation else {})},
                            final=True)


def validation_of(config: TrialConfig) -> Any:
    """The trial's `imlsweep.eval.trial.Validation`, or None without `eval.every_steps`."""
    if config.eval is None or config.eval.every_steps is None:
        return None
    from imlsweep.eval.trial import Validation

    return Validation(config)


def training_done(train: TrainConfig, progress: Progress) -> bool:
    if train.max_steps is not None:
        return progress.step >= train.max_steps
    return progress.epoch >= (train.epochs or 1)


def batch_sizes(batch: dict[str, Any]) -> tuple[int, int]:
    """Tokens that are not padding (encoder and decoder), and examples (documents) in a batch."""
    if "document_ids" in batch:
        document_ids = batch["document_ids"]
        return int((document_ids >= 0).sum()), int((document_ids.max(dim=1).values + 1).sum())
    if "target_document_ids" in batch:
        source, target = batch["source_document_ids"], batch["target_document_ids"]
        return int((source >= 0).sum() + (target >= 0).sum()), int((target.max(dim=1).values + 1).sum())
    return int(batch["attention_mask"].sum() + (batch["labels"] >= 0).sum()), int(batch["input_ids"].shape[0])
