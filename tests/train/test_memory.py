"""The memory planner's arithmetic: model states as DeepSpeed's own estimators give them, activations as
Korthikanti et al. (2022) count them, a model's shape from its config alone."""

from __future__ import annotations

import dataclasses

import pytest

from imlsweep.train.config import TrialConfig
from imlsweep.train.memory import (GIB, ModelShape, TrialShape, activation_bytes, buffer_bytes,
                                   layer_activation_bytes, model_shape, model_states_bytes, plan_memory, planned_model,
                                   trial_shape)
from imlsweep.train.model import ModelConfig, architecture_config, load_model

MODEL = ModelShape(params=1_300_000_000, largest_module_params=100_000_000, hidden=2048, ffn=8192, heads=32,
                   layers=24, decoder_layers=0, vocab=50272, gated_ffn=False, dropout=True, attention_dropout=True,
                   load_bytes=2)
TRIAL = TrialShape(workers=16, workers_per_node=8, gpu=True, zero_stage=2, offload_optimizer=False,
                   offload_params=False, precision="bf16", micro_batch_size=4, seq_len=2048, target_len=128,
                   activation_checkpointing=False)


def with_settings(**settings) -> TrialShape:
    return dataclasses.replace(TRIAL, **settings)


def test_gpu_model_states_are_deepspeeds_estimates():
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    params, largest = MODEL.params, MODEL.largest_module_params
    for offload in (False, True):
        _, gpu = estimate_zero2_model_states_mem_needs(params, num_gpus_per_node=8, num_nodes=2, cpu_offload=offload)
        assert model_states_bytes(MODEL, with_settings(offload_optimizer=offload))[0] == pytest.approx(gpu, rel=1e-6)
    for offload, offload_params in [(False, False), (True, False), (True, True)]:
        _, gpu, _ = estimate_zero3_model_states_mem_needs(params, largest, num_gpus_per_node=8, num_nodes=2,
                                                          cpu_offload=offload, cpu_offload_params=offload_params)
        trial = with_settings(zero_stage=3, offload_optimizer=offload, offload_params=offload_params)
        assert model_states_bytes(MODEL, trial)[0] == pytest.approx(gpu, rel=1e-6)
    # what leaves the GPU goes to the host: the 16-byte optimizer partition, and ZeRO-3's parameter shard
    assert model_states_bytes(MODEL, with_settings(offload_optimizer=True))[1] == 16 * params / 16
    assert model_states_bytes(MODEL, with_settings(zero_stage=3, offload_optimizer=True, offload_params=True))[1] == \
        pytest.approx(18 * params / 16)
    # stage 0 holds everything: bf16 weights and gradients, fp32 master copy and Adam moments (20 bytes);
    # fp32 needs no master copy (16); each stage holds less than the one before
    assert model_states_bytes(MODEL, with_settings(zero_stage=0))[0] == 20 * params
    assert model_states_bytes(MODEL, with_settings(zero_stage=0, precision="fp32"))[0] == 16 * params
    per_stage = [model_states_bytes(MODEL, with_settings(zero_stage=stage))[0] for stage in range(4)]
    assert per_stage == sorted(per_stage, reverse=True) and len(set(per_stage)) == 4


def test_activations_follow_korthikanti_and_checkpointing_keeps_layer_inputs():
    s, b, h = TRIAL.seq_len, TRIAL.micro_batch_size, MODEL.hidden
    # 16-bit activations, dropout, a 4h feed-forward: 34·sbh per layer (the fused attention has no 5as/h term)
    assert layer_activation_bytes(s, b, MODEL, e=2) == 34 * s * b * h
    logits = b * s * MODEL.vocab * (2 * 2 + 12)
    mask = b * s * s * 2
    full = activation_bytes(MODEL, TRIAL)
    assert full == MODEL.layers * 34 * s * b * h + logits + mask
    checkpointed = activation_bytes(MODEL, with_settings(activation_checkpointing=True))
    assert checkpointed == MODEL.layers * 2 * s * b * h + 34 * s * b * h + logits + mask
    # on CPU, attention dropout sends SDPA down its math path: softmax, dropout mask and output per layer
    cpu = with_settings(gpu=False)
    assert activation_bytes(MODEL, cpu) - full == MODEL.layers * 3 * 2 * MODEL.heads * b * s * s
    assert activation_bytes(dataclasses.replace(MODEL, attention_dropout=False), cpu) == full
    # fp32 doubles every element but the dropout masks; a gated feed-forward keeps two more sbf tensors
    assert layer_activation_bytes(s, b, MODEL, e=4) == (4 * 5 + 1 + 4 + 1 + 2 * 4) * s * b * h + 2 * 4 * s * b * MODEL.ffn
    gated = dataclasses.replace(MODEL, gated_ffn=True)
    assert layer_activation_bytes(s, b, gated, e=2) - layer_activation_bytes(s, b, MODEL, e=2) == 2 * 2 * s * b * MODEL.ffn


def test_sdpa_on_cpu_keeps_the_scores_only_with_attention_dropout():
    """What the CPU term of the plan stands on: the scores SDPA saves for its backward pass."""
    import torch

    b, a, s, e = 2, 4, 64, 4
    q, k, v = (torch.randn(b, a, s, 16, requires_grad=True) for _ in range(3))
    mask = torch.zeros(b, 1, s, s)
    for dropout, score_tensors in [(0.0, 0), (0.1, 3)]:
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        scores = sum(t.numel() * t.element_size() for t in saved if t.shape[-2:] == (s, s) and t.numel() > mask.numel())
        assert scores == score_tensors * e * a * b * s * s


def test_buffers_deepspeeds_estimates_leave_out():
    """The reduce bucket (resident whole on a GPU under ZeRO 1-3, as far as the gradients fill it on a
    CPU); under ZeRO-3 the reduce-scatter's flat copy of the bucket's gradients, the gradient partition in
    the training precision (beside the optimizer's when offloaded) and the gathered parameters kept for
    reuse, up to 5e8 of them, the estimate's 2pL included."""
    small = dataclasses.replace(MODEL, params=10_000_000)
    assert buffer_bytes(MODEL, TRIAL) == (2 * 5e8, 0)
    assert buffer_bytes(small, TRIAL) == (2 * 5e8, 0)
    assert buffer_bytes(small, with_settings(gpu=False, precision="fp32")) == (4 * 10_000_000, 0)
    assert buffer_bytes(small, with_settings(zero_stage=0)) == (2 * 10_000_000, 0)
    # ZeRO-3: the bucket and the reduce-scatter's flat copy of it, each 5e8 bf16 gradients here
    kept = 2 * 5e8 - 2 * 2 * MODEL.largest_module_params
    assert buffer_bytes(MODEL, with_settings(zero_stage=3)) == (2 * 2 * 5e8 + kept + 2 * MODEL.params / 16, 0)
    assert buffer_bytes(MODEL, with_settings(zero_stage=3, offload_optimizer=True)) == \
        (2 * 2 * 5e8 + kept, 2 * MODEL.params / 16)
    lora = dataclasses.replace(small, params=small.params + 40_000, adapter_params=40_000, largest_module_params=1000)
    assert buffer_bytes(lora, with_settings(gpu=False, zero_stage=3, workers=2)) == \
        (2 * 2 * 40_000 + 2 * (lora.params - 2 * 1000) + 40_000, 0)


def test_memory_plan_per_gpu_and_per_node():
    plan = plan_memory(MODEL, TRIAL)
    states, _ = model_states_bytes(MODEL, TRIAL)
    bucket, _ = buffer_bytes(MODEL, TRIAL)
    assert plan.device_gb == pytest.approx((states + bucket + activation_bytes(MODEL, TRIAL)) / GIB + 2.5)
    # every worker loads the whole model on the host (bf16 checkpoint here) before DeepSpeed takes it
    assert plan.host_gb_per_worker == pytest.approx(0.5 + MODEL.params * 2 / GIB)
    # under ZeRO-3 each worker builds only its partition (no optimizer offloaded here: nothing else on the host)
    assert plan_memory(MODEL, with_settings(zero_stage=3)).host_gb_per_worker == \
        pytest.approx(0.5 + MODEL.params * 2 / 16 / GIB)
    assert plan.host_gb_per_node == pytest.approx(8 * plan.host_gb_per_worker)
    cpu = plan_memory(MODEL, with_settings(gpu=False))
    assert cpu.host_gb_per_worker == cpu.device_gb > plan.device_gb - 2.5


def test_model_shape_from_the_config_alone():
    tiny = model_shape(architecture_config(ModelConfig(name="tiny-llama")))
    model = load_model(ModelConfig(name="tiny-llama"))
    assert tiny.params == sum(p.numel() for p in model.parameters())
    assert (tiny.hidden, tiny.ffn, tiny.layers, tiny.vocab, tiny.gated_ffn) == (64, 128, 2, 2048, True)
    t5 = model_shape(architecture_config(ModelConfig(name="tiny-t5")))
    assert t5.seq2seq and t5.decoder_layers == 2 and t5.gated_ffn
    # the study models plan offline from the package's copies of their config.json
    opt = model_shape(architecture_config(ModelConfig(name="facebook/opt-30b")))
    assert 29.9e9 < opt.params < 30.1e9 and opt.load_bytes == 2 and opt.largest_module_params == 50272 * 7168
    tk = model_shape(architecture_config(ModelConfig(name="allenai/tk-instruct-3b-def-pos")))
    assert 2.7e9 < tk.params < 2.9e9 and tk.seq2seq and tk.load_bytes == 4
    assert architecture_config(ModelConfig(name="someone/unknown-model")) is None


def test_trial_shape_reads_the_trial_settings():
    config = TrialConfig.model_validate({
        "name": "t", "corpus": "c", "model": {"name": "tiny-t5"},
        "mixture": {"max_source_length": 300, "max_target_length": 40, "pack_seq2seq": True},
        "train": {"workers": 12, "gpus_per_worker": 1, "zero_stage": 3, "micro_batch_size": 2,
                  "activation_checkpointing": True}})
    shape = trial_shape(config, model_shape(architecture_config(config.model)), gpus_per_node=8)
    assert (shape.workers, shape.workers_per_node, shape.seq_len, shape.target_len) == (12, 8, 300, 40)
    assert shape.zero_stage == 3 and shape.activation_checkpointing and shape.gpu and shape.packed_seq2seq
    # packed rows carry dense encoder, decoder and cross-attention document masks
    t5 = model_shape(architecture_config(config.model))
    padded = dataclasses.replace(shape, packed_seq2seq=False)
    assert activation_bytes(t5, shape) - activation_bytes(t5, padded) == 2 * (300**2 + 40**2 + 300 * 40) * 2  # bf16


def test_lora_trains_only_its_adapters():
    """With `model.lora` the frozen base has no gradients and no optimizer state: DeepSpeed's 16 bytes per
    trained parameter (and the gradients) count the adapters alone; the weights and activations stay."""
    lora = dataclasses.replace(MODEL, params=MODEL.params + 4_000_000, adapter_params=4_000_000)
    full = dataclasses.replace(MODEL, params=lora.params)
    assert (lora.trainable_params, full.trainable_params) == (4_000_000, lora.params)
    states = {stage: model_states_bytes(lora, with_settings(zero_stage=stage))[0] for stage in (0, 2, 3)}
    n, params, adapters = TRIAL.workers, lora.params, 4_000_000
    assert states[0] == 2 * params + (2 + 16) * adapters
    assert states[2] == 2 * params + (2 + 16) * adapters / n
    assert states[3] == pytest.approx(2 * params / n + 16 * adapters / n + 4 * MODEL.largest_module_params)
    for stage in (0, 2, 3):
        assert states[stage] < model_states_bytes(full, with_settings(zero_stage=stage))[0]
    assert activation_bytes(lora, TRIAL) == activation_bytes(full, TRIAL)


def test_lora_adapters_counted_on_the_meta_model_as_peft_trains_them():
    from imlsweep.train.lora import apply_lora

    for name, lora in [("tiny-llama", {"r": 4}), ("tiny-t5", {"r": 8, "target_modules": ["q", "k", "v", "o"]})]:
        config = ModelConfig(name=name, lora=lora)
        shape, base = planned_model(config), planned_model(ModelConfig(name=name))
        assert shape.params == base.params + shape.adapter_params and base.adapter_params == 0
        if name == "tiny-llama":  # peft's own model, as a trial trains it
            model = apply_lora(load_model(config), config.lora)
            assert shape.adapter_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
            assert shape.params == sum(p.numel() for p in model.parameters())
        else:  # r x (in + out) per adapted projection: 4 in each of 2 encoder, 2 decoder and 2 cross-attention blocks
            hf_config = architecture_config(config)
            inner = hf_config.num_heads * hf_config.d_kv
            assert shape.adapter_params == 6 * 4 * 8 * (hf_config.d_model + inner)
    # the study's 30B model counts its adapters without any memory: r x (in + out) of q and v in 48 layers
    opt = planned_model(ModelConfig(name="facebook/opt-30b", lora={"r": 16}))
    assert opt.adapter_params == 48 * 2 * 16 * (7168 + 7168)
