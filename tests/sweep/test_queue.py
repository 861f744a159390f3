"""The dependency queue and the random-search draws: pure logic, no Ray."""

from __future__ import annotations

from pathlib import Path

from imlsweep.sweep.estimate import Estimator
from imlsweep.sweep.queue import QueuedTrial, TrialQueue, chain_seconds
from imlsweep.sweep.search_space import sample_params
from imlsweep.sweep.simulate import lower_bound, trial_durations
from imlsweep.sweep.spec import Search
from imlsweep.sweep.state import all_trials
from imlsweep.sweep.sweep import open_spec

SWEEPS = Path(__file__).parents[2] / "sweeps"


def grid() -> list[QueuedTrial]:
    """pre (long) <- ft1, ft2 <- ft2b; two independent trials; in spec order."""
    return [QueuedTrial("pre", None, 100), QueuedTrial("solo-a", None, 10), QueuedTrial("solo-b", None, 10),
            QueuedTrial("ft1", "pre", 5), QueuedTrial("ft2", "pre", 20), QueuedTrial("ft2b", "ft2", 50)]


def drain(queue: TrialQueue) -> list[str]:
    names = []
    while (name := queue.pop()) is not None:
        names.append(name)
    return names


def test_chain_seconds_is_the_longest_chain_behind_a_trial():
    assert chain_seconds(grid()) == {"pre": 170, "solo-a": 10, "solo-b": 10, "ft1": 5, "ft2": 70, "ft2b": 50}


def test_runnable_trials_longest_chain_first_dependents_when_released():
    queue = TrialQueue(grid())
    assert drain(queue) == ["pre", "solo-a", "solo-b"]  # ft* wait for pre; ties keep spec order
    assert not queue.exhausted
    queue.completed("pre")
    assert drain(queue) == ["ft2", "ft1"]
    queue.completed("ft2")
    assert drain(queue) == ["ft2b"] and queue.exhausted


def test_a_failed_dependency_drops_its_dependents_transitively():
    queue = TrialQueue(grid())
    drain(queue)
    assert queue.failed("pre") == ["ft1", "ft2", "ft2b"]
    assert queue.exhausted and queue.pop() is None


def test_resume_done_trials_release_and_missing_dependencies_are_unrunnable():
    left = [trial for trial in grid() if trial.name not in ("pre", "ft2")]
    queue = TrialQueue(left, done={"pre"})  # ft2 neither done nor queued (it was stopped early)
    assert queue.unrunnable == {"ft2": ["ft2b"]}
    assert drain(queue) == ["solo-a", "solo-b", "ft1"] and queue.exhausted


def test_a_merge_waits_for_every_trial_it_merges_and_is_dropped_once():
    trials = grid() + [QueuedTrial("merged", None, 1, merges=("ft1", "ft2"))]
    assert chain_seconds(trials)["ft1"] == 6
    queue = TrialQueue(trials)
    drain(queue)
    queue.completed("pre")
    drain(queue)
    queue.completed("ft1")
    assert queue.pop() is None  # ft2 is still running
    queue.completed("ft2")
    assert drain(queue) == ["ft2b", "merged"] and queue.exhausted
    failing = TrialQueue(trials)
    drain(failing)
    assert failing.failed("pre") == ["ft1", "ft2", "ft2b", "merged"]  # merged once, though both fail
    assert failing.exhausted
    resumed = TrialQueue([trial for trial in trials if trial.name != "ft2"], done={"pre", "ft1"})
    assert resumed.unrunnable == {"ft2": ["ft2b", "merged"]}


def test_random_search_samples_are_a_function_of_seed_and_index():
    search = Search(num_samples=3, metric="loss", seed=7, space={
        "train.lr": {"kind": "loguniform", "low": 1e-5, "high": 1e-2},
        "train.micro_batch_size": {"kind": "choice", "values": [4, 8]},
        "train.warmup_steps": {"kind": "randint", "low": 0, "high": 10}})
    first = [sample_params(search, index) for index in range(3)]
    assert first == [sample_params(search, index) for index in range(3)]
    assert len({sample["train.lr"] for sample in first}) == 3
    assert all(1e-5 <= s["train.lr"] <= 1e-2 and s["train.micro_batch_size"] in (4, 8)
               and 0 <= s["train.warmup_steps"] < 10 for s in first)
    assert sample_params(search.model_copy(update={"seed": 8}), 0) != first[0]


def test_the_961_grid_runs_independent_trials_while_prefinetune_trains():
    """The shipped grid's queue, as the driver builds it: the 720 trials that start from the base model (714
    of them single-task) are handed out at once, longest chain first; the 240 that start from `prefinetune`
    wait for it; every trial is handed out exactly once; the lower bound is the longest chain."""
    sweep = open_spec(SWEEPS / "stl_mtl_sample_efficiency.yaml")
    durations = trial_durations(sweep, Estimator(sweep.spec))
    trials = all_trials(sweep)
    queue = TrialQueue([QueuedTrial(trial.name, trial.depends_on, durations[trial.name]) for trial in trials])
    first_wave = drain(queue)
    waiting = [trial.name for trial in trials if trial.depends_on]
    assert len(trials) == 961 and len(waiting) == 240 and len(first_wave) == 721  # 720 and prefinetune
    assert {trial.depends_on for trial in trials if trial.depends_on} == {"prefinetune-f_m1"}
    assert "prefinetune-f_m1" in first_wave
    chains = chain_seconds([QueuedTrial(t.name, t.depends_on, durations[t.name]) for t in trials])
    assert [chains[name] for name in first_wave] == sorted((chains[name] for name in first_wave), reverse=True)
    queue.completed("prefinetune-f_m1")
    assert sorted(first_wave + drain(queue)) == sorted(trial.name for trial in trials) and queue.exhausted
    bound = lower_bound(sweep, 128, durations)
    assert bound["critical_path_s"] == max(chains.values())
    assert bound["lower_bound_s"] == max(bound["critical_path_s"], bound["gpu_seconds"] / 128)
