"""The trainer's pure parts: document attention, the loss, configs, the DeepSpeed config, retention."""

from __future__ import annotations

import json

import pytest
import torch

from imlsweep.config import ConfigError, validate_config
from imlsweep.errors import UserError
from imlsweep.eval.config import EvalConfig
from imlsweep.train.attention import dense_document_mask
from imlsweep.train.checkpoints import checkpoint_config_kwargs, checkpoint_due
from imlsweep.train.config import TrainConfig, TrialConfig
from imlsweep.train.deepspeed_config import deepspeed_config, merge
from imlsweep.train.loss import batch_loss
from imlsweep.train.metrics import records_up_to, window_metrics
from imlsweep.train.model import ModelConfig, load_model
from imlsweep.train.schedule import lr_factor, lr_scheduler
from imlsweep.train.trial import check_trial, optimizer_steps
from imlsweep.train.worker import batch_sizes

TRIAL = {"name": "t", "corpus": "corpus", "model": {"name": "tiny-opt"}, "mixture": {}}


def documents(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(ids, labels) of three documents: a few source tokens (label -100), then target tokens."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for length, source in [(9, 4), (6, 2), (11, 5)]:
        ids = torch.randint(3, 2000, (length,), generator=generator)
        labels = ids.clone()
        labels[:source] = -100
        out.append((ids, labels))
    return out


def packed_row(docs: list[tuple[torch.Tensor, torch.Tensor]], pad: int) -> dict[str, torch.Tensor]:
    def row(parts: list[torch.Tensor], fill: int) -> torch.Tensor:
        return torch.cat([*parts, torch.full((pad,), fill)]).unsqueeze(0)

    return {"input_ids": row([ids for ids, _ in docs], 2), "labels": row([labels for _, labels in docs], -100),
            "position_ids": row([torch.arange(len(ids)) for ids, _ in docs], 0),
            "document_ids": row([torch.full((len(ids),), n) for n, (ids, _) in enumerate(docs)], -1)}


@pytest.mark.parametrize("name", ["tiny-opt", "tiny-llama"])
def test_packed_loss_equals_unpacked_loss(name):
    model = load_model(ModelConfig(name=name, dropout=0.0)).eval()
    docs = documents(seed=1)
    with torch.no_grad():
        packed, packed_count = batch_loss(model, packed_row(docs, pad=5))
        total, count = 0.0, 0
        for doc in docs:
            loss, n = batch_loss(model, packed_row([doc], pad=0))
            total, count = total + loss * n, count + n
        leaky, _ = batch_loss(model, packed_row(docs, pad=5), attention="flash_attention_varlen")
    assert int(packed_count) == count == sum(int((labels[1:] != -100).sum()) for _, labels in docs)
    assert torch.allclose(packed, total / count, atol=1e-5)
    # without the mask (flash-attn varlen's inputs under sdpa), restarted position ids alone let later documents attend to earlier ones
    assert not torch.allclose(leaky, total / count, atol=1e-3)


def test_block_causal_mask_keeps_documents_apart():
    document_ids = torch.tensor([[0, 0, 1, 1, 1, -1]])
    mask = dense_document_mask(document_ids, document_ids, causal=True)[0, 0]
    allowed = (mask == 0).int()
    assert allowed.tolist() == [[1, 0, 0, 0, 0, 0],
                                [1, 1, 0, 0, 0, 0],
                                [0, 0, 1, 0, 0, 0],
                                [0, 0, 1, 1, 0, 0],
                                [0, 0, 1, 1, 1, 0],
                                [1, 1, 1, 1, 1, 1]]  # padding sees all, so its row stays finite
    assert mask.min() == torch.finfo(torch.float32).min


def test_seq2seq_loss_is_mean_over_target_tokens():
    model = load_model(ModelConfig(name="tiny-t5", dropout=0.0)).eval()
    batch = {"input_ids": torch.tensor([[5, 6, 7, 1], [8, 9, 1, 2]]), "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
             "labels": torch.tensor([[10, 11, 1], [12, 1, -100]])}
    with torch.no_grad():
        loss, count = batch_loss(model, batch)
        reference = model(**batch).loss  # transformers' own mean over labels != -100
    assert int(count) == 5
    assert torch.allclose(loss, reference, atol=1e-5)
    assert batch_sizes(batch) == (7 + 5, 2)


def test_batch_sizes_count_documents_and_real_tokens():
    batch = packed_row(documents(seed=2), pad=4)
    assert batch_sizes(batch) == (26, 3)


def bad(train: dict) -> str:
    with pytest.raises(ConfigError) as error:
        validate_config({**TRIAL, "train": train}, TrialConfig, "trial.yaml")
    return str(error.value)


def test_config_rejects_what_deepspeed_cannot_run():
    assert "trial.yaml: train: " in bad({"precision": "fp16"}) and "gpus_per_worker" in bad({"precision": "fp16"})
    assert "renamed to `worker_restarts`" in bad({"max_failures": 2})
    assert "offload_params needs zero_stage 3" in bad({"zero_stage": 2, "offload_params": True})
    assert "offload_optimizer needs zero_stage" in bad({"zero_stage": 0, "offload_optimizer": True})
    message = bad({"workers": 3, "micro_batch_size": 2, "global_batch_size": 16})
    assert "global_batch_size 16 is not divisible by micro_batch_size 2 x workers 3 = 6" in message
    assert "not global_batch_size 16" in bad({"workers": 2, "micro_batch_size": 2, "grad_accum": 3, "global_batch_size": 16})
    assert "set max_steps or epochs, not both" in bad({"max_steps": 3, "epochs": 1})
    assert "train.zero_stage" in bad({"zero_stage": 4})
    assert "train.betaz" in bad({"betaz": [0.9, 0.99]})


def test_check_trial_fails_before_any_worker(tmp_path):
    with pytest.raises(UserError, match="neither a bundled tiny model"):
        check_trial(TrialConfig.model_validate({**TRIAL, "model": {"name": "no-such-model"}}))
    with pytest.raises(UserError, match="does not exist"):
        check_trial(TrialConfig.model_validate({**TRIAL, "model": {"name": str(tmp_path / "missing")}}))
    from imlsweep.data.tokenizer import load_tokenizer

    no_eos = tmp_path / "no_eos"
    load_tokenizer("tiny").save_pretrained(no_eos)
    settings = json.loads((no_eos / "tokenizer_config.json").read_text())
    settings["eos_token"] = None
    (no_eos / "tokenizer_config.json").write_text(json.dumps(settings))
    with pytest.raises(UserError, match="no EOS"):
        check_trial(TrialConfig.model_validate({**TRIAL, "model": {"name": "tiny-opt", "tokenizer": str(no_eos)}}))
    assert check_trial(TrialConfig.model_validate({**TRIAL, "model": {"name": "tiny-t5"}})) == "seq2seq"


def test_deepspeed_config_from_train_settings():
    train = TrainConfig(workers=2, micro_batch_size=4, global_batch_size=32, zero_stage=3, offload_optimizer=True,
                        offload_params=True, precision="bf16", lr=3e-5, weight_decay=0.1, clip=0.5, max_steps=100,
                        deepspeed={"zero_optimization": {"reduce_bucket_size": 1000}, "bf16": {"enabled": False}})
    config = deepspeed_config(train)
    assert (config["train_batch_size"], config["train_micro_batch_size_per_gpu"],
            config["gradient_accumulation_steps"]) == (32, 4, 4)
    assert config["gradient_clipping"] == 0.5
    zero = config["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu" and zero["offload_param"]["device"] == "cpu"
    assert zero["reduce_bucket_size"] == 1000  # the raw override merges key by key ...
    assert config["bf16"] == {"enabled": False}  # ... and wins
    assert config["optimizer"] == {"type": "AdamW", "params": {"lr": 3e-5, "betas": [0.9, 0.95], "eps": 1e-8,
                                                                "weight_decay": 0.1}}
    assert "scheduler" not in config  # imlsweep.train.schedule, unless the override names one
    fp32 = deepspeed_config(TrainConfig(zero_stage=0, precision="fp32"))
    assert not fp32["bf16"]["enabled"] and not fp32["fp16"]["enabled"]
    assert fp32["optimizer"]["params"]["torch_adam"] is True  # no fused CUDA Adam on CPU
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}, "d": 4}) == {"a": {"b": 1, "c": 3}, "d": 4}


def test_deepspeed_config_file_override(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"gradient_clipping": 2.0}))
    assert deepspeed_config(TrainConfig(deepspeed=str(path)))["gradient_clipping"] == 2.0
    with pytest.raises(ConfigError, match="train.deepspeed"):
        deepspeed_config(TrainConfig(deepspeed=str(tmp_path / "missing.json")))


def test_linear_warmup_then_linear_decay_to_zero():
    factors = [lr_factor(step, warmup_steps=4, total_steps=12, schedule="linear") for step in range(13)]
    assert factors[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert factors[4:] == pytest.approx([1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0])
    assert [lr_factor(step, 2, 10, "constant") for step in range(5)] == [0.0, 0.5, 1.0, 1.0, 1.0]
    assert lr_factor(0, 0, 10, "linear") == 1.0


def test_scheduler_drives_the_optimizer():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = lr_scheduler(TrainConfig(lr=2.0, warmup_steps=2, max_steps=4), total_steps=4)(optimizer)
    lrs = []
    for _ in range(4):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == [0.0, 1.0, 2.0, 1.0]


def test_retention_settings():
    assert checkpoint_config_kwargs(TrainConfig(keep="all")) == {}
    assert checkpoint_config_kwargs(TrainConfig(keep="last", num_to_keep=2)) == {"num_to_keep": 2}
    assert checkpoint_config_kwargs(TrainConfig(keep="best", num_to_keep=3)) == {
        "num_to_keep": 3, "checkpoint_score_attribute": "loss", "checkpoint_score_order": "min"}
    validating = EvalConfig(every_steps=5, best_metric="val/rougeL")
    assert checkpoint_config_kwargs(TrainConfig(keep="best", num_to_keep=1), validating) == {
        "num_to_keep": 1, "checkpoint_score_attribute": "val/rougeL", "checkpoint_score_order": "max"}
    assert checkpoint_config_kwargs(TrainConfig(keep="last"), validating) == {"num_to_keep": 1}
    with pytest.raises(ConfigError, match=r"train.checkpoint_every 15 is not a multiple of eval.every_steps 10"):
        validate_config({**TRIAL, "train": {"keep": "best", "checkpoint_every": 15}, "eval": {"every_steps": 10}},
                        TrialConfig, "trial.yaml")
    with pytest.raises(ConfigError, match=r"eval.best_metric"):  # a validation score, named as reported
        validate_config({**TRIAL, "eval": {"every_steps": 10, "best_metric": "loss"}}, TrialConfig, "trial.yaml")
    assert checkpoint_due(TrainConfig(checkpoint_every=5), 10)
    assert not checkpoint_due(TrainConfig(checkpoint_every=5), 11)
    assert not checkpoint_due(TrainConfig(checkpoint_every=5, keep="none"), 10)


def test_batch_arithmetic_and_metrics():
    trial = TrialConfig.model_validate({**TRIAL, "train": {"workers": 2, "micro_batch_size": 4, "grad_accum": 2}})
    assert trial.train.rows_per_step == 16
    assert optimizer_steps(70, trial) == 4  # 35 rows per worker -> 9 micro-batches (the last partial) -> 4 steps
    assert optimizer_steps(10, trial) == 1  # 5 rows per worker: a full and a partial micro-batch, one step
    assert optimizer_steps(70, trial.model_copy(update={"train": trial.train.model_copy(update={"epochs": 2})})) == 9
    metrics = window_metrics([30.0, 10.0, 400.0, 6.0], workers=2, seconds=2.0)
    assert metrics == {"loss": 3.0, "tokens_per_s": 100.0, "target_tokens_per_s": 2.5}
    assert records_up_to([{"step": 2}, {"step": 4}, {"step": 6}], 4) == [{"step": 2}, {"step": 4}]
