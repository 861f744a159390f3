"""`imlsweep bench sweep`: a grid of N tiny trials run by the platform (`imlsweep sweep run`: one Tune
run, single-worker trials trained inside reused trainable processes) against the pattern Ray's
documentation recommends for tuning a Ray Train job (a Tune function trainable that builds and fits one
`TorchTrainer` per trial, with `TuneReportCallback`), side by side in one command.

Both sides run in a fresh process that starts its own local Ray instance (same size), with the same trial
configs, the same number of trials at a time, the same worker loop and data pipeline
(`imlsweep.train.trial.run_trial`, which builds the trial's dataset and, out of process, a `TorchTrainer`
of `train_loop_per_worker`), and each side its own empty token cache.

Per-trial overhead = (wall time x trials running at once - time spent in training loops) / trials:
the seconds of a trial slot not spent training (process and Ray start, imports, model loading,
DeepSpeed and data set-up), start-up of the sweep included. `trial_overhead_s` leaves the once-per-
sweep start-up out: the mean, over the platform's trials, of the trainable's wall time minus its
training time.

`--simulate` adds the driver's overhead per trial on the 961-model grid, simulated on 16 nodes x 8 GPUs
(`imlsweep sweep simulate`; about 6 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
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

REPO_ROOT = Path(__file__).resolve().parents[3]
GRID_SPEC = "sweeps/stl_mtl_sample_efficiency.yaml"
SIMULATE_ARGS = ["--nodes", "16", "--gpus-per-node", "8"]
SIMULATE_COMMAND = f"imlsweep sweep simulate {GRID_SPEC} {' '.join(SIMULATE_ARGS)} --json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=24, help="trials in the grid (default 24; 96 for the "
                        "overhead target)")
    parser.add_argument("--quick", action="store_true", help="1 trial each way: checks the command, not the speed")
    parser.add_argument("--model", default="tiny-llama", help="a bundled tiny model (default tiny-llama)")
    parser.add_argument("--workdir", default=None, help="where corpus and trials go (default: a temporary folder)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="the platform only (its overhead per trial), without the TorchTrainer-per-trial baseline")
    parser.add_argument("--simulate", action="store_true",
                        help=f"also simulate the 961-model grid on 16 x 8 GPUs for the driver's overhead per trial "
                        f"(`{SIMULATE_COMMAND}`; about 6 minutes on 2 cores)")


def bench_spec(corpus_dir: Path, storage: Path, trials: int, model: str, concurrency: int | str,
               token_cache: Path) -> dict[str, Any]:
    return {
        "name": "bench_sweep", "corpus": str(corpus_dir), "storage": str(storage), "concurrency": concurrency,
        "base": {
            "token_cache": str(token_cache),
            "model": {"name": model},
            "mixture": {"tasks": ["task828_copa_commonsense_cause_effect"], "samples_per_task": 16, "max_length": 256},
            "train": {"max_steps": 2, "micro_batch_size": 4, "precision": "fp32", "zero_stage": 2,
                      "warmup_steps": 0, "log_every": 1, "keep": "none"},
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


def overhead_per_trial(wall_s: float, concurrency: int, train_s: float, trials: int) -> float:
    """Seconds of a trial slot not spent training, per trial: every slot is held for the whole run (start-up
    included), and `train_s` of all slots' time went into training loops."""
    return (wall_s * concurrency - train_s) / trials


def comparison(trials: int, concurrency: int, platform: dict[str, float],
               baseline: dict[str, float] | None) -> dict[str, Any]:
    """The figures of a run: each side's `wall_s` and `train_s`, the ratio and the overhead per trial."""
    figures: dict[str, Any] = {
        "trials": trials,
        "concurrency": concurrency,
        "platform_wall_s": round(platform["wall_s"], 2),
        "overhead_per_trial_s": round(overhead_per_trial(platform["wall_s"], concurrency, platform["train_s"], trials), 2),
        "trial_overhead_s": round(platform["trial_overhead_s"], 2),
    }
    if baseline is not None:
        figures |= {
            "baseline_wall_s": round(baseline["wall_s"], 2),
            "speedup": round(baseline["wall_s"] / platform["wall_s"], 3),
            "baseline_overhead_per_trial_s": round(
                overhead_per_trial(baseline["wall_s"], concurrency, baseline["train_s"], trials), 2),
        }
    return figures


def timed_command(command: list[str], what: str) -> tuple[float, str]:
    """Wall seconds of a command in a fresh process (its imports and Ray start included), and its stdout."""
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{result.stderr[-3000:]}")
    return wall, result.stdout


def run_platform(spec_path: Path, sweep_dir: Path) -> dict[str, float]:
    wall, _ = timed_command([sys.executable, "-m", "imlsweep.cli", "sweep", "run", str(spec_path), "--json"],
                            "platform run")
    return {"wall_s": wall, "train_s": train_seconds(sweep_dir), "trial_overhead_s": trial_overhead(sweep_dir)}


def run_baseline(sweep_dir: Path, storage: Path, concurrency: int, token_cache: Path) -> dict[str, float]:
    wall, _ = timed_command([sys.executable, "-m", "imlsweep.bench.sweep", str(sweep_dir), str(storage),
                             str(concurrency), str(token_cache)], "baseline run")
    return {"wall_s": wall, "train_s": train_seconds(storage)}


def tune_baseline(sweep_dir: Path, storage: Path, concurrency: int, token_cache: Path) -> None:
    """The baseline: the platform's trial configs run as Ray's documentation tunes a Ray Train job, one
    `TorchTrainer` built and fitted per trial inside a Tune function trainable holding (almost) no
    resources itself, on a local instance sized as `sweep run` sizes one."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from imlsweep.ray_session import ray_session
    from imlsweep.train.config import load_trial_config
    from imlsweep.train.trial import run_trial

    configs = {trial.name: load_trial_config(trial.file(CONFIG_FILE)).model_copy(update={"token_cache": str(token_cache)})
               for trial in trial_dirs(sweep_dir)}

    def train_driver(params: dict[str, Any]) -> None:
        run_trial(configs[params["trial"]], str(storage), callbacks=[TuneReportCallback()])

    with ray_session():
        tuner = tune.Tuner(
            tune.with_resources(train_driver, {"CPU": 0.01}),
            param_space={"trial": tune.grid_search(sorted(configs))},
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrency),
            run_config=tune.RunConfig(name="baseline", storage_path=str(storage / ".tune"), verbose=0),
        )
        results = tuner.fit()
    if results.errors:
        raise RuntimeError(f"baseline: {len(results.errors)} trial(s) failed: {results.errors[0]}")


def run_simulation() -> dict[str, Any]:
    """The driver's overhead on the 961-model grid, from `imlsweep sweep simulate` in a fresh process."""
    _, stdout = timed_command([sys.executable, "-m", "imlsweep.cli", "sweep", "simulate", str(REPO_ROOT / GRID_SPEC),
                               *SIMULATE_ARGS, "--json"], "simulation")
    figures = json.loads(stdout)
    return {key: figures[key] for key in ("trials", "trials_ran", "driver_overhead_per_trial_s",
                                          "makespan_over_lower_bound", "gpu_utilization", "wall_s")}


def run(args: argparse.Namespace) -> int:
    from imlsweep.corpus.build import build_corpus
    from imlsweep.corpus.config import load_corpus_config

    trials = 1 if args.quick else args.trials
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="imlsweep-bench-sweep-"))
    corpus_dir = workdir / "corpus"
    if not (corpus_dir / "manifest.parquet").is_file():
        build_corpus(load_corpus_config(REPO_ROOT / "sweeps" / "corpora" / "superni_sample.yaml"), corpus_dir)
    concurrency = max(4, os.cpu_count() or 1) // 2  # as `sweep run` sizes a local instance: a worker + a data CPU per trial
    spec_path = workdir / "bench_sweep.yaml"
    spec = bench_spec(corpus_dir, workdir / "platform", trials, args.model, concurrency, workdir / "platform-token-cache")
    spec_path.write_text(yaml.safe_dump(spec))
    sweep_dir = workdir / "platform" / "bench_sweep"
    print(f"[bench] platform: {trials} trials, {concurrency} at a time", file=sys.stderr, flush=True)
    platform = run_platform(spec_path, sweep_dir)
    baseline = None
    if not args.no_baseline:
        print(f"[bench] baseline: the same {trials} trials, a TorchTrainer per Tune trial, {concurrency} at a time",
              file=sys.stderr, flush=True)
        baseline = run_baseline(sweep_dir, workdir / "baseline", concurrency, workdir / "baseline-token-cache")
    figures = comparison(trials, concurrency, platform, baseline)
    if args.simulate:
        print("[bench] simulating the 961-model grid on 16 x 8 GPUs", file=sys.stderr, flush=True)
        figures["simulated_grid"] = run_simulation()
    else:
        figures["simulated_grid"] = f"not run: pass --simulate, or run `{SIMULATE_COMMAND}` (about 6 minutes)"
    print_figures(figures, args.json)
    return 0


if __name__ == "__main__":  # the baseline's own process: SWEEP_DIR STORAGE CONCURRENCY TOKEN_CACHE
    tune_baseline(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
