"""`imlsweep sweep simulate`: the real driver and Tune's real scheduling on a local Ray cluster of N
simulated nodes (Ray takes declared GPU counts on a machine without GPUs), each trial replaced by a runner
that holds its resources for its estimated duration times a time scale and reports like a real trial.

Figures are reported at scale 1 (as the real sweep would take): the makespan (first trial start to last
trial end), the lower bound max(critical path, GPU-seconds / GPUs), GPU utilisation, the critical path
itself, and the driver's own CPU seconds per trial (its process time over the run: Tune's loop, the
searcher, the callbacks, the results table). A trial's duration is the plan's estimate (`Estimator`): from
the built corpus where it can be had here, else from the spec's figures (`estimated_from_corpus` says which).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Iterator

from imlsweep.sweep.estimate import Estimator
from imlsweep.sweep.queue import QueuedTrial, chain_seconds
from imlsweep.sweep.spec import SweepSpec
from imlsweep.sweep.state import all_trials
from imlsweep.sweep.sweep import Sweep
from imlsweep.train.config import TrialConfig

TARGET_WALL_S = 300.0  # the default time scale makes the lower bound take this long here
HEAD_CPUS = 2  # the head node runs the driver; it takes no GPU trial


@dataclass
class SimulatedRun:
    """What a trial run returns (the fields `imlsweep.sweep.trainable` reads), for a simulated trial."""

    name: str
    trial_dir: str
    metrics: dict[str, Any]
    checkpoint: str | None
    hf_model_dir: str | None
    train_time_s: float
    train_tokens: int
    train_examples: int


@dataclass
class SimulatedRunner:
    """Holds the trial's resources (in its trainable) for its estimated seconds x `time_scale`, reporting a
    falling loss four times on the way, as a training trial reports to Tune."""

    seconds: dict[str, float]  # trial name -> estimated seconds at scale 1
    time_scale: float
    reports: int = 4

    def __call__(self, config: TrialConfig, storage_path: str, *, callbacks=()) -> SimulatedRun:
        from ray import tune

        from imlsweep.trial_dir import TrialDir

        seconds = self.seconds[config.name]
        for report in range(1, self.reports + 1):
            time.sleep(seconds * self.time_scale / self.reports)
            tune.report({"step": report, "loss": 1.0 / report, "train_time_s": seconds * report / self.reports})
        trial_dir = TrialDir.of(storage_path, config.name)
        return SimulatedRun(name=config.name, trial_dir=trial_dir.uri, metrics={"loss": 1.0 / self.reports},
                            checkpoint=None, hf_model_dir=None, train_time_s=seconds, train_tokens=0, train_examples=0)


def simulated_spec(spec: SweepSpec) -> SweepSpec:
    """The spec as simulated: no W&B runs."""
    return spec.model_copy(update={"tracking": spec.tracking.model_copy(update={"wandb": False})})


def trial_durations(sweep: Sweep, estimator: Estimator) -> dict[str, float]:
    """Every trial's estimated seconds at scale 1 (search samples included): what its runner sleeps for."""
    return {trial.name: estimator.trial(trial.config).seconds for trial in all_trials(sweep)}


def lower_bound(sweep: Sweep, total_gpus: float, durations: dict[str, float]) -> dict[str, float]:
    """max(critical path, GPU-seconds / GPUs) at scale 1, from the trials' `durations`."""
    resources = sweep.spec.resources
    gpus_per_trial = resources.workers * resources.gpus_per_worker
    chains = chain_seconds([QueuedTrial(trial.name, trial.depends_on, durations[trial.name], tuple(trial.merges))
                            for trial in all_trials(sweep)])
    gpu_seconds = sum(durations.values()) * gpus_per_trial
    critical_path = max(chains.values(), default=0.0)
    return {"critical_path_s": critical_path, "gpu_seconds": gpu_seconds,
            "lower_bound_s": max(critical_path, gpu_seconds / total_gpus if total_gpus else 0.0)}


@contextlib.contextmanager
def simulated_cluster(nodes: int, gpus_per_node: int, cpus_per_node: int) -> Iterator[dict[str, float]]:
    """A local Ray cluster: a CPU head (the driver's node) and `nodes` worker nodes with declared GPUs, each
    its own raylet; yields the GPU nodes' totals."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": HEAD_CPUS, "num_gpus": 0,
                                                           "include_dashboard": False})
    try:
        for _ in range(nodes):
            cluster.add_node(num_cpus=cpus_per_node, num_gpus=gpus_per_node)
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        yield {"CPU": nodes * cpus_per_node, "GPU": nodes * gpus_per_node}
    finally:
        ray.shutdown()
        cluster.shutdown()


def trial_clock():
    """A Tune callback that notes when the first trial started and the last one ended (wall clock)."""
    from ray import tune

    class TrialClock(tune.Callback):
        first_start: float | None = None
        last_end: float | None = None
        starts = 0

        def on_trial_start(self, iteration, trials, trial, **info):
            self.first_start = self.first_start or time.monotonic()
            self.starts += 1

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.last_end = time.monotonic()

    return TrialClock()


def default_time_scale(bound: dict[str, float]) -> float:
    return TARGET_WALL_S / bound["lower_bound_s"] if bound["lower_bound_s"] else 1.0


def simulate(sweep: Sweep, estimator: Estimator, *, nodes: int, gpus_per_node: int, cpus_per_node: int,
             time_scale: float | None = None) -> dict[str, Any]:
    """Run the sweep's driver in a scratch sweep directory on the simulated cluster this process is
    connected to (`simulated_cluster(nodes, gpus_per_node, cpus_per_node)`); returns the figures."""
    from imlsweep.sweep.driver import run_sweep

    total_gpus = nodes * gpus_per_node
    durations = trial_durations(sweep, estimator)
    bound = lower_bound(sweep, total_gpus, durations)
    scale = time_scale or default_time_scale(bound)
    with tempfile.TemporaryDirectory(prefix="imlsweep-simulate-") as scratch:
        simulated = Sweep(spec=simulated_spec(sweep.spec), source=sweep.source, uri=f"{scratch}/{sweep.spec.name}",
                          corpus_dir=sweep.corpus_dir, trials=sweep.trials)
        clock = trial_clock()
        cpu_start, wall_start = time.process_time(), time.monotonic()
        status = run_sweep(simulated, runner=SimulatedRunner(durations, scale), holds_workers=True,
                           callbacks=(clock,), estimator=estimator)
        driver_cpu_s, wall_s = time.process_time() - cpu_start, time.monotonic() - wall_start
    trials = status["total_trials"]
    makespan = ((clock.last_end or 0.0) - (clock.first_start or 0.0)) / scale
    resources = sweep.spec.resources
    return {
        "sweep": sweep.spec.name,
        "trials": trials,
        "trials_ran": status["counts"]["completed"],
        "trials_started": clock.starts,  # equals trials_ran when nothing ran twice
        "nodes": nodes, "gpus_per_node": gpus_per_node, "cpus_per_node": cpus_per_node,
        "gpus_per_trial": resources.workers * resources.gpus_per_worker,
        "time_scale": scale,
        "estimated_from_corpus": estimator.from_corpus,
        "makespan_s": makespan,
        "lower_bound_s": bound["lower_bound_s"],
        "critical_path_s": bound["critical_path_s"],
        "makespan_over_lower_bound": makespan / bound["lower_bound_s"] if bound["lower_bound_s"] else None,
        "gpu_utilization": bound["gpu_seconds"] / (makespan * total_gpus) if makespan and total_gpus else None,
        "driver_overhead_per_trial_s": driver_cpu_s / max(1, trials),
        "wall_s": wall_s,
    }


def format_simulation(figures: dict[str, Any]) -> str:
    hours = 3600.0
    return "\n".join([
        f"sweep {figures['sweep']}: {figures['trials_ran']}/{figures['trials']} trials ran on {figures['nodes']} nodes x "
        f"{figures['gpus_per_node']} GPUs ({figures['gpus_per_trial']:g} GPUs per trial), time scale {figures['time_scale']:.3g}",
        f"  makespan {figures['makespan_s'] / hours:.3g} h; lower bound {figures['lower_bound_s'] / hours:.3g} h "
        f"(critical path {figures['critical_path_s'] / hours:.3g} h); "
        f"{figures['makespan_over_lower_bound']:.3g}x the bound" if figures["makespan_over_lower_bound"] else
        f"  makespan {figures['makespan_s']:.3g} s",
        f"  GPU utilisation {figures['gpu_utilization']:.1%}" if figures["gpu_utilization"] is not None else "  no GPUs",
        f"  driver overhead {figures['driver_overhead_per_trial_s'] * 1000:.1f} ms CPU per trial; {figures['wall_s']:.0f} s here",
    ])
