"""`imlsweep bench sweep`: a grid of N tiny trials run by the platform (one Ray instance, Tune with
reused trainable actors) against the same trials as one `imlsweep train` process per trial (the way
single-task studies are usually scripted), side by side in one command.

Per-trial overhead = (wall time x trials running at once - time spent in training loops) / trials:
the seconds of a trial slot not spent training (process and Ray start, imports, model loading,
DeepSpeed and data set-up), start-up of the sweep included. `trial_overhead_s` leaves the once-per-
sweep start-up out: the mean, over trials, of the trainable's wall time minus its training time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from imlsweep.output import print_figures
from imlsweep.trial_dir import CONFIG_FILE, TrialDir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=24, help="trials in the grid (default 24)")
    parser.add_argument("--quick", action="store_true", help="2 trials: checks the command, not the speed")
    parser.add_argument("--model", default="tiny-llama", help="a bundled tiny model (default tiny-llama)")
    parser.add_argument("--workdir", default=None, help="where corpus and trials go (default: a temporary folder)")


def bench_spec(corpus_dir: Path, storage: Path, trials: int, model: str, concurrency: int | str) -> dict[str, Any]:
    return {
        "name": "bench_sweep", "corpus": str(corpus_dir), "storage": str(storage), "concurrency": concurrency,
        "base": {
            "model": {"name": model},
            "mixture": {"tasks": ["task828_copa_commonsense_cause_effect"], "samples_per_task": 16, "max_length": 256},
            "train": {"max_steps": 2, "micro_batch_size": 4, "precision": "fp32", "zero_stage": 2,
                      "warmup_steps": 0, "log_every": 1},
        },
        "tracking": {"wandb": False},
        "retention": {"hf_model": "none"},
        "stages": [{"name": "grid", "axes": {"train.seed": list(range(trials))}}],
    }


def trial_dirs(storage: Path) -> list[TrialDir]:
    """The trial directories under a storage folder (those with a trial config), in name order."""
    return [TrialDir(str(path.parent)) for path in sorted(storage.glob(f"*/{CONFIG_FILE}"))]


def train_seconds(storage: Path) -> float:
    """Seconds spent in training loops, summed over the trials (their last logged `train_time_s`)."""
    logs = [trial.read_metrics_log() for trial in trial_dirs(storage)]
    return sum(float(log[-1].get("train_time_s", 0.0)) for log in logs if log)


def trial_overhead(sweep_dir: Path) -> float:
    results = [result for trial in trial_dirs(sweep_dir) if (result := trial.read_result()) is not None]
    return sum(result.trial_wall_s - result.train_time_s for result in results) / len(results)


def run_platform(spec_path: Path) -> tuple[float, int]:
    """Wall seconds of `imlsweep sweep run` in a fresh process (Ray start included), and its concurrency."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "imlsweep.cli", "sweep", "run", str(spec_path), "--json"],
                            capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"platform run failed:\n{result.stderr[-3000:]}")
    return wall, int(yaml.safe_load(spec_path.read_text())["concurrency"])


def run_per_process(sweep_dir: Path, storage: Path) -> float:
    """The same trial configs, each through its own `imlsweep train` process, one after another."""
    start = time.perf_counter()
    for trial in trial_dirs(sweep_dir):
        result = subprocess.run([sys.executable, "-m", "imlsweep.cli", "train", trial.file(CONFIG_FILE),
                                 "--storage", str(storage)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"per-process trial {trial.name} failed:\n{result.stderr[-3000:]}")
        print(f"[bench] per-process: {trial.name} done", file=sys.stderr, flush=True)
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> int:
    from imlsweep.corpus.build import build_corpus
    from imlsweep.corpus.config import load_corpus_config

    trials = 2 if args.quick else args.trials
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="imlsweep-bench-sweep-"))
    corpus_dir = workdir / "corpus"
    if not (corpus_dir / "manifest.parquet").is_file():
        config_path = Path(__file__).resolve().parents[3] / "sweeps" / "corpora" / "superni_sample.yaml"
        build_corpus(load_corpus_config(config_path), corpus_dir)
    concurrency = max(4, os.cpu_count() or 1) // 2  # as `sweep run` sizes a local instance: a worker + a data CPU per trial
    spec_path = workdir / "bench_sweep.yaml"
    spec_path.write_text(yaml.safe_dump(bench_spec(corpus_dir, workdir / "platform", trials, args.model, concurrency)))
    print(f"[bench] platform: {trials} trials, {concurrency} at a time", file=sys.stderr, flush=True)
    platform_wall, concurrency = run_platform(spec_path)
    sweep_dir = workdir / "platform" / "bench_sweep"
    platform_train = train_seconds(sweep_dir)
    print(f"[bench] per-process: {trials} trials, one after another", file=sys.stderr, flush=True)
    per_process_storage = workdir / "per_process"
    per_process_wall = run_per_process(sweep_dir, per_process_storage)
    per_process_train = train_seconds(per_process_storage)
    figures = {
        "trials": trials,
        "concurrency": concurrency,
        "platform_wall_s": round(platform_wall, 2),
        "per_process_wall_s": round(per_process_wall, 2),
        "speedup": round(per_process_wall / platform_wall, 3),
        "overhead_per_trial_s": round((platform_wall * concurrency - platform_train) / trials, 2),
        "trial_overhead_s": round(trial_overhead(sweep_dir), 2),
        "per_process_overhead_per_trial_s": round((per_process_wall - per_process_train) / trials, 2),
    }
    print_figures(figures, args.json)
    return 0
