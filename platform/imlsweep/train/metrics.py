"""Training metrics: what a logging window accumulates, and the throughput and MFU it reports."""

from __future__ import annotations

from dataclasses import dataclass

# Dense bf16 peak FLOP/s per GPU, for the MFU estimate.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}


@dataclass
class Window:
    """Sums over the micro-batches since the last report (one worker)."""

    nll_sum: float = 0.0
    target_tokens: int = 0
    tokens: int = 0
    examples: int = 0

    def add(self, loss: float, target_tokens: int, tokens: int, examples: int) -> None:
        self.nll_sum += loss * target_tokens
        self.target_tokens += target_tokens
        self.tokens += tokens
        self.examples += examples

    def as_list(self) -> list[float]:
        return [self.nll_sum, float(self.target_tokens), float(self.tokens), float(self.examples)]


def window_metrics(sums: list[float], workers: int, seconds: float) -> dict[str, float]:
    """Metrics from window sums over all workers: loss is the mean over target tokens, rates are per worker."""
    nll_sum, target_tokens, tokens, _ = sums
    seconds = max(seconds, 1e-9)
    return {
        "loss": nll_sum / max(target_tokens, 1.0),
        "tokens_per_s": tokens / workers / seconds,
        "target_tokens_per_s": target_tokens / workers / seconds,
    }


def peak_flops(device_name: str) -> float | None:
    for key, flops in PEAK_FLOPS.items():
        if key in device_name:
            return flops
    return None


def model_flops_utilization(n_params: int, n_layers: int, hidden: int, seq_len: int,
                            tokens_per_s: float, device_peak: float) -> float:
    """Training FLOPs per token = 6N + 12 * layers * hidden * seq (attention), over the device's peak."""
    flops_per_token = 6 * n_params + 12 * n_layers * hidden * seq_len
    return flops_per_token * tokens_per_s / device_peak


def records_up_to(records: list[dict], step: int) -> list[dict]:
    """An earlier attempt's metrics.jsonl records up to the step training resumes from."""
    return [record for record in records if record.get("step", 0) <= step]


def peak_memory_bytes(use_gpu: bool) -> list[float]:
    """[this process's peak resident host memory, its peak GPU memory allocated (0 on CPU)] in bytes:
    what a trial's memory plan is checked against. The host figure is the process's since it started
    (an in-process trial's includes the trials its process ran before)."""
    import resource
    import sys

    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    host = float(rss if sys.platform == "darwin" else rss * 1024)  # macOS reports bytes, Linux KiB
    return [host, float(torch.cuda.max_memory_allocated()) if use_gpu else 0.0]
