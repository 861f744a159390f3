"""Which trial runs next: the sweep's trials as a dependency graph, pure logic, no Ray.

A trial is runnable once the trial it starts from (`depends_on`) has completed, whatever stage either is
in, and once every trial it waits for (`after`: a mixture search's proposal waits for its proxy trials) has
finished, however (completed, failed, stopped or dropped). Among runnable trials the one with the longest chain of work still behind it goes first (its own
estimated seconds plus the longest chain of trials that start from it, transitively), so a trial that
others wait for is never left to the end; ties keep the spec's order. Every operation is O(log n) in
the number of trials, so a 961-trial grid costs the driver nothing per finished trial.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass


@dataclass(frozen=True)
class QueuedTrial:
    name: str
    depends_on: str | None  # the trial it starts from; None: runnable at once
    seconds: float  # estimated run time, for the priority only
    after: tuple[str, ...] = ()  # trials that must have finished, in any way, before it runs


def chain_seconds(trials: list[QueuedTrial]) -> dict[str, float]:
    """Each trial's seconds plus the longest chain of trials that start from it. Trials come in spec order,
    where a trial's dependency is always earlier, so one pass from the end sees every dependent first."""
    tail = {trial.name: 0.0 for trial in trials}
    for trial in reversed(trials):
        tail[trial.name] += trial.seconds
        for before in (trial.depends_on, *trial.after):
            if before in tail:
                tail[before] = max(tail[before], tail[trial.name])
    return tail


class TrialQueue:
    """`pop()` the next runnable trial; `completed(name)` releases the trials that start from it;
    `failed(name)` drops them (they can never run). `trials` are those left to run; `done` those that
    completed before (a resume). A trial whose dependency is neither is left out, in `unrunnable`
    (dependency -> its trials): that dependency failed or was stopped early and will not run here. A
    trial in `after` that is not queued here has finished before."""

    def __init__(self, trials: list[QueuedTrial], done: set[str] = frozenset()) -> None:
        self.order = {trial.name: index for index, trial in enumerate(trials)}
        self.priority = chain_seconds(trials)
        self.waiting: dict[str, list[str]] = {}  # dependency -> trials that start from it
        self.awaited: dict[str, list[str]] = {}  # trial -> trials whose `after` lists it
        self.blockers: dict[str, int] = {}  # trial -> its dependency and `after` trials not yet through
        self.dropped: set[str] = set()
        self.heap: list[tuple[float, int, str]] = []
        self.pending = 0  # trials queued or waiting, not yet handed out
        for trial in trials:
            if trial.name in done:
                continue
            self.pending += 1
            before = [name for name in trial.after if name in self.order and name not in done]
            for name in before:
                self.awaited.setdefault(name, []).append(trial.name)
            self.blockers[trial.name] = len(before)
            if trial.depends_on is not None and trial.depends_on not in done:
                self.waiting.setdefault(trial.depends_on, []).append(trial.name)
                self.blockers[trial.name] += 1
            if self.blockers[trial.name] == 0:
                self._push(trial.name)
        self.unrunnable = {dependency: self.failed(dependency) for dependency in list(self.waiting)
                           if dependency not in self.order}

    def _push(self, name: str) -> None:
        heapq.heappush(self.heap, (-self.priority[name], self.order[name], name))

    def _release(self, name: str) -> None:
        self.blockers[name] -= 1
        if self.blockers[name] == 0 and name not in self.dropped:
            self._push(name)

    def _finished(self, name: str) -> None:
        for waiter in self.awaited.pop(name, []):
            self._release(waiter)

    def pop(self) -> str | None:
        """The next runnable trial, or None when every trial left waits for one still running."""
        if not self.heap:
            return None
        self.pending -= 1
        return heapq.heappop(self.heap)[2]

    def completed(self, name: str) -> None:
        for dependent in self.waiting.pop(name, []):
            self._release(dependent)
        self._finished(name)

    def failed(self, name: str) -> list[str]:
        """Drop every trial that starts from `name`, transitively; returns them in spec order. `name` and the
        dropped trials count as finished for the trials that wait for them (`after`)."""
        dropped, stack = [], list(self.waiting.pop(name, []))
        while stack:
            dependent = stack.pop()
            dropped.append(dependent)
            stack += self.waiting.pop(dependent, [])
        self.pending -= len(dropped)
        self.dropped.update(dropped)
        for finished in [name, *dropped]:
            self._finished(finished)
        return sorted(dropped, key=self.order.__getitem__)

    @property
    def exhausted(self) -> bool:
        """Nothing is left to hand out, now or later."""
        return self.pending == 0
