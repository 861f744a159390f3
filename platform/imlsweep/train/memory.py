"""How much memory a trial needs, per GPU and per node's host, from the model's config alone.

Pure arithmetic over a `ModelShape` (parameter counts of the model built on PyTorch's meta device, so
no weights are read or allocated) and the trial's settings. Figures are GiB (2**30 bytes).

Model states, per data-parallel rank (N = workers, Ψ = parameters, T = trainable parameters: all of them,
or with `model.lora` the adapters' alone, counted by peft on the meta model, the base frozen with no
gradient or optimizer state; p = bytes of a parameter in the training precision, L = the most parameters
one module holds): DeepSpeed's own
estimates (`estimate_zero2_model_states_mem_needs`, `estimate_zero3_model_states_mem_needs`), which
count 16 bytes of optimizer partition per trainable parameter (fp32 master copy, fp32 gradient,
Adam's two moments), whatever the precision:

    stage 0     pΨ + pT + 8T (+ 8T: fp32 master weights and gradients under bf16/fp16)
    stage 1     pΨ + pT + 16T/N               offload_optimizer (1, 2): pΨ on the GPU, 16T/N on the host
    stage 2     pΨ + (p + 16)T/N
    stage 3     pΨ/N + 16T/N + 2pL            offload_optimizer: pΨ/N + 2pL on the GPU, 16T/N on the host
                                              offload_params: 2pL on the GPU, (p + 16)Ψ/N on the host

and what those estimates leave out (`buffer_bytes`): the bucket DeepSpeed reduces gradients through
(`reduce_bucket_size`, 5·10⁸ elements by default, p bytes each: allocated whole on a GPU under ZeRO 1-3;
on a CPU, and under ZeRO 0 where the bucket is a flattened copy, only as much as the T gradients fill);
under ZeRO-3 a second copy of what the bucket holds (its coalesced reduce-scatter concatenates the
bucket's gradients into one flat tensor), the partition of gradients in the training precision, pT/N
(`grad_partitions_flat_buffer`, on the host when the optimizer is offloaded), and the gathered
parameters it keeps for their reuse: a parameter used again within `stage3_max_reuse_distance` (10⁹)
parameters is not released, and each layer's are used again in the backward pass after the forward and
backward of the layers above it, so those of the last 5·10⁸ parameters stay whole: p·min(Ψ, 5·10⁸) on
the device, the 2pL above included. Checked on CPU against measured peaks by `imlsweep bench memory`.

Activations of one micro batch (b rows of s tokens, h hidden, f feed-forward, a heads, e bytes per
activation element, d = 1 when dropout keeps a mask per element): Korthikanti et al., "Reducing
Activation Recomputation in Large Transformer Models" (2022), eq. 1, per layer sbh(34 + 5as/h) bytes,
written out term by term so it holds for any precision, feed-forward width and gated feed-forward:

    attention   sbh(5e + d)                   inputs of Q/K/V, Q, K, V, the output projection; dropout
    scores      0 on GPU, 3e·abs² on CPU      on GPU, SDPA's fused kernels never materialise softmax(QK^T)
                with attention dropout        (the 5as/h term); on CPU, SDPA's kernel has no dropout and its
                                              math path keeps the softmax, the dropout mask and its output,
                                              each in the activation dtype. The 4-D document mask, b·s²·e,
                                              is built once and shared by every layer (packed
                                              encoder-decoder rows: encoder, decoder and cross masks)
    MLP         sbh(e + d) + sbf·e·(2 or 4)   input, activation input and output (gated: gate, up,
                                              act(gate), product)
    norms       2e·sbh

(e = 2, d = 1, f = 4h gives Korthikanti's 34sbh.) With activation checkpointing each layer keeps only
its input (e·sbh) and one layer's activations are live again while it is recomputed. The logits add
b·s·V·(2e + 12): the head's output, the copy the loss reshapes, its fp32 copy, the log-softmax the
cross-entropy keeps and the gradient flowing back. Encoder-decoder models: encoder layers over the
source, decoder layers over the target plus a cross-attention block (the source's keys and values).

Host memory per node: each worker's process (Python, PyTorch, DeepSpeed, Ray), plus what the worker
holds on the host: the model as it is loaded, in the checkpoint's dtype (under ZeRO 0-2 the whole model,
which every worker builds before DeepSpeed partitions it; under ZeRO-3 its partition alone, Ψ/N, as
`imlsweep.train.partition` builds the model split over the workers), or the offloaded states once
training runs, whichever is larger.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

GIB = 2**30
# A worker process's own footprint before its model (Python, PyTorch, transformers, DeepSpeed, Ray, the
# process group and data iterator): the peak RSS of 2-worker CPU trials of a 10M model under ZeRO 0 and 2
# (`imlsweep bench memory`) less what the plan counts for their model, 0.48 to 0.52 GiB.
HOST_RUNTIME_GB = 0.5
# A GPU's CUDA context, kernels, communication buffers and allocator slack.
GPU_RUNTIME_GB = 2.5
# DeepSpeed's optimizer partition per trainable parameter: fp32 master copy, fp32 gradient, Adam m and v.
OPTIMIZER_PARTITION_BYTES = 16
# DeepSpeed's default reduce_bucket_size (and allreduce_bucket_size under ZeRO 0), in elements
REDUCE_BUCKET_ELEMENTS = 500_000_000
# ZeRO-3 keeps gathered the parameters used again within its default stage3_max_reuse_distance (1e9): the
# layers of the last half of that, whose forward and backward passes both fall within it
KEPT_GATHERED_PARAMS = 500_000_000
PRECISION_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


@dataclass(frozen=True)
class ModelShape:
    """What the planner needs of a model, read from its config."""

    params: int
    largest_module_params: int  # the most parameters one module holds itself (ZeRO-3 gathers one at a time)
    hidden: int
    ffn: int
    heads: int
    layers: int  # decoder-only: its layers; encoder-decoder: encoder layers
    decoder_layers: int  # encoder-decoder only, else 0
    vocab: int
    gated_ffn: bool
    dropout: bool
    attention_dropout: bool
    load_bytes: int  # bytes per parameter of the weights as loaded (the checkpoint's dtype)
    adapter_params: int = 0  # LoRA: its adapters' parameters (in `params` too), the only ones trained

    @property
    def seq2seq(self) -> bool:
        return self.decoder_layers > 0

    @property
    def trainable_params(self) -> int:
        return self.adapter_params or self.params


@dataclass(frozen=True)
class TrialShape:
    """The settings of a trial that decide its memory."""

    workers: int
    workers_per_node: int
    gpu: bool
    zero_stage: int
    offload_optimizer: bool
    offload_params: bool
    precision: str
    micro_batch_size: int
    seq_len: int  # decoder-only: the packed row; encoder-decoder: the source
    target_len: int  # encoder-decoder only
    activation_checkpointing: bool
    packed_seq2seq: bool = False  # encoder-decoder rows packed (`mixture.pack_seq2seq`): dense document masks


@dataclass(frozen=True)
class MemoryPlan:
    model_states_gb: float  # on the device (GPU, or the host of a CPU worker)
    activations_gb: float
    device_gb: float  # per worker: a GPU's total, or a CPU worker's whole process
    host_gb_per_worker: float
    host_gb_per_node: float

    def as_dict(self) -> dict[str, float]:
        return {key: round(value, 3) for key, value in self.__dict__.items()}


def model_states_bytes(model: ModelShape, trial: TrialShape) -> tuple[float, float]:
    """(on the device, offloaded to the host) bytes of parameters, gradients and optimizer states per rank."""
    n, p = trial.workers, PRECISION_BYTES[trial.precision]
    params, trainable = model.params, model.trainable_params
    partition = OPTIMIZER_PARTITION_BYTES * trainable / n
    gathered = 2 * p * model.largest_module_params
    if trial.zero_stage == 0:
        fp32_copies = 8 * trainable if p < 4 else 0  # master weights and gradients
        return p * params + p * trainable + 8 * trainable + fp32_copies, 0.0
    if trial.offload_optimizer and trial.zero_stage in (1, 2):
        return p * params, partition
    if trial.zero_stage == 1:
        return p * params + p * trainable + partition, 0.0
    if trial.zero_stage == 2:
        return p * params + p * trainable / n + partition, 0.0
    if trial.offload_params:
        return gathered, p * params / n + partition
    if trial.offload_optimizer:
        return p * params / n + gathered, partition
    return p * params / n + partition + gathered, 0.0


def buffer_bytes(model: ModelShape, trial: TrialShape) -> tuple[float, float]:
    """(on the device, on the host) bytes DeepSpeed's estimates leave out: its reduce bucket, and under
    ZeRO-3 the reduce-scatter's copy of it, the partition of gradients in the training precision and the
    gathered parameters it keeps."""
    p, trainable = PRECISION_BYTES[trial.precision], model.trainable_params
    filled = p * min(trainable, REDUCE_BUCKET_ELEMENTS)
    whole_bucket = trial.gpu and trial.zero_stage > 0  # torch.empty on a GPU is resident at once
    bucket = p * REDUCE_BUCKET_ELEMENTS if whole_bucket else filled
    if trial.zero_stage < 3:
        return bucket, 0.0
    kept = max(0, p * min(model.params, KEPT_GATHERED_PARAMS) - 2 * p * model.largest_module_params)
    device = bucket + filled + kept
    partition = p * trainable / trial.workers
    return (device, partition) if trial.offload_optimizer else (device + partition, 0.0)


def layer_activation_bytes(s: int, b: int, model: ModelShape, e: int) -> float:
    """One transformer layer's saved activations (Korthikanti et al. 2022, eq. 1, term by term), the
    attention scores aside."""
    h, f, d = model.hidden, model.ffn, int(model.dropout)
    attention = s * b * h * (5 * e + d)
    mlp = s * b * h * (e + d) + s * b * f * e * (4 if model.gated_ffn else 2)
    norms = 2 * e * s * b * h
    return attention + mlp + norms


def score_bytes(queries: int, keys: int, model: ModelShape, trial: TrialShape) -> float:
    """The attention scores one attention block keeps: none on GPU or without attention dropout (SDPA's
    fused kernels); on CPU with dropout, SDPA's math path keeps softmax, dropout mask and output."""
    if trial.gpu or not model.attention_dropout:
        return 0
    return 3 * PRECISION_BYTES[trial.precision] * model.heads * trial.micro_batch_size * queries * keys


def activation_bytes(model: ModelShape, trial: TrialShape) -> float:
    """Peak activation bytes of one micro batch's forward and backward."""
    e, b = PRECISION_BYTES[trial.precision], trial.micro_batch_size
    source, target = trial.seq_len, trial.target_len
    stacks = [(source, model.layers, score_bytes(source, source, model, trial))]
    if model.seq2seq:
        # decoder layers over the target, each with a cross-attention block over the source's keys and values
        cross = (target * b * model.hidden * (5 * e + int(model.dropout)) + 2 * e * source * b * model.hidden
                 + score_bytes(target, source, model, trial))
        stacks.append((target, model.decoder_layers, score_bytes(target, target, model, trial) + cross))
    total, live_layer = 0.0, 0.0
    for s, layers, extra in stacks:
        layer = layer_activation_bytes(s, b, model, e) + extra
        if trial.activation_checkpointing:
            total += layers * e * s * b * model.hidden  # each layer's input
            live_layer = max(live_layer, layer)  # the layer being recomputed
        else:
            total += layers * layer
    logits_len = target if model.seq2seq else source
    if not model.seq2seq:
        mask = b * source**2 * e
    else:  # packed: encoder, decoder and cross-attention masks; padded rows: a [b, s] padding mask only
        mask = b * (source**2 + target**2 + source * target) * e if trial.packed_seq2seq else 0
    return total + live_layer + mask + b * logits_len * model.vocab * (2 * e + 12)


def plan_memory(model: ModelShape, trial: TrialShape) -> MemoryPlan:
    on_device, offloaded = model_states_bytes(model, trial)
    buffers_device, buffers_host = buffer_bytes(model, trial)
    on_device, offloaded = on_device + buffers_device, offloaded + buffers_host
    activations = activation_bytes(model, trial)
    load = model.params * model.load_bytes / (trial.workers if trial.zero_stage == 3 else 1)  # ZeRO-3: partitioned
    if trial.gpu:
        device_gb = (on_device + activations) / GIB + GPU_RUNTIME_GB
        host_worker = HOST_RUNTIME_GB + max(load, offloaded) / GIB
    else:
        # a CPU worker's device is its host: the loaded model becomes the trained one (same tensors or
        # converted and freed), so the larger of the two counts, beside the states and activations
        device_gb = HOST_RUNTIME_GB + (max(load, on_device + offloaded) + activations) / GIB
        host_worker = device_gb
    return MemoryPlan(model_states_gb=(on_device + (0 if trial.gpu else offloaded)) / GIB,
                      activations_gb=activations / GIB, device_gb=device_gb, host_gb_per_worker=host_worker,
                      host_gb_per_node=host_worker * trial.workers_per_node)


# -- reading a model's shape and a trial's settings -------------------------------------------------------

def planned_model(config: Any) -> ModelShape | None:
    """The shape of a trial's model (`ModelConfig`, its LoRA adapters included), or None when the model's
    config is not at hand (`train.model.architecture_config`)."""
    from imlsweep.train.model import architecture_config

    hf_config = architecture_config(config)
    return model_shape(hf_config, config.lora) if hf_config is not None else None


def model_shape(hf_config: Any, lora: Any = None) -> ModelShape:
    """Parameter counts of the model built on the meta device (no memory), with the adapters of `lora`
    (a `LoraConfig`) if given, and its dimensions."""
    return _model_shape(hf_config.to_json_string(), lora.model_dump_json() if lora is not None else None)


@lru_cache(maxsize=32)
def _model_shape(config_json: str, lora_json: str | None) -> ModelShape:
    from transformers import AutoConfig

    from imlsweep.train.attention import attention_dropout
    from imlsweep.train.lora import LoraConfig, trained_params
    from imlsweep.train.model import meta_model

    values = json.loads(config_json)
    hf_config = AutoConfig.for_model(values.pop("model_type"), **values)
    model = meta_model(hf_config)
    params = sum(p.numel() for p in model.parameters())
    largest = max(sum(p.numel() for p in module.parameters(recurse=False)) for module in model.modules())
    adapters = trained_params(model, LoraConfig.model_validate_json(lora_json)) if lora_json else 0
    seq2seq = bool(hf_config.is_encoder_decoder)
    decoder_layers = (getattr(hf_config, "num_decoder_layers", None) or hf_config.num_hidden_layers) if seq2seq else 0
    ffn = next(getattr(hf_config, key) for key in ("intermediate_size", "ffn_dim", "d_ff", "n_inner")
               if getattr(hf_config, key, None))
    gated = (hf_config.model_type in ("llama", "mistral", "qwen2", "gemma")
             or str(getattr(hf_config, "feed_forward_proj", "")).startswith("gated"))
    dropout = any(float(getattr(hf_config, key, 0) or 0) > 0 for key in ("dropout", "dropout_rate", "hidden_dropout"))
    dtype = str(getattr(hf_config, "torch_dtype", None) or getattr(hf_config, "dtype", None) or "float32")
    return ModelShape(params=params + adapters, largest_module_params=largest, hidden=hf_config.hidden_size, ffn=ffn,
                      heads=hf_config.num_attention_heads, layers=hf_config.num_hidden_layers,
                      decoder_layers=decoder_layers, vocab=hf_config.vocab_size, gated_ffn=gated, dropout=dropout,
                      attention_dropout=attention_dropout(hf_config) > 0,
                      load_bytes=2 if ("16" in dtype) else 4, adapter_params=adapters)


def trial_shape(config: Any, model: ModelShape, gpus_per_node: int) -> TrialShape:
    """The memory-deciding settings of a `TrialConfig`. A node holds as many of a trial's workers as
    its GPUs allow; CPU workers share one node."""
    train, mixture = config.train, config.mixture
    if train.use_gpu:
        per_node = min(train.workers, max(1, int(gpus_per_node // train.gpus_per_worker)))
    else:
        per_node = train.workers
    return TrialShape(workers=train.workers, workers_per_node=per_node, gpu=train.use_gpu,
                      zero_stage=train.zero_stage, offload_optimizer=train.offload_optimizer,
                      offload_params=train.offload_params, precision=train.precision,
                      micro_batch_size=train.micro_batch_size,
                      seq_len=mixture.max_source_length if model.seq2seq else mixture.max_length,
                      target_len=mixture.max_target_length,
                      activation_checkpointing=train.activation_checkpointing,
                      packed_seq2seq=model.seq2seq and mixture.pack_seq2seq)
