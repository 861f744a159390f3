"""Which trial runs next: the sweep's trials as a dependency graph, pure logic, no Ray.

A trial is runnable once every trial it needs has completed (the one it starts from, `depends_on`, and
those whose weights it merges, `merges`), whatever stage any of them is in, and every trial it waits for
(`after`: a mixture search's proposal waits for its proxy trials) has finished, however (completed,
failed, stopped or dropped). Among runnable trials the one with the longest chain of work still behind it goes first (its own
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
    merges: tuple[str, ...] = ()  # the trials whose weights it merges: it waits for all of them
    after: tuple[str, ...] = ()  # trials that must have finished, in any way, before it runs

    @property
    def needs(self) -> tuple[str, ...]:
        return ((self.depends_on,) if self.depends_on is not None else ()) + self.merges


def chain_seconds(trials: list[QueuedTrial]) -> dict[str, float]:
    """Each trial's seconds plus the longest chain of trials that start from it. Trials come in spec order,
    where a trial's dependency is always earlier, so one pass from the end sees every dependent first."""
    tail = {trial.name: 0.0 for trial in trials}
    for trial in reversed(trials):
        tail[trial.name] += trial.seconds
        for need in trial.needs + trial.after:
            if need in tail:
                tail[need] = max(tail[need], tail[trial.name])
    return tail


class TrialQueue:
    """`pop()` the next runnable trial; `completed(name)` releases the trials that need it (once all they
    need has completed); `failed(name)` drops them (they can never run). `trials` are those left to run;
    `done` those that completed before (a resume). A trial that needs one that is neither is left out, in
    `unrunnable` (dependency -> its trials): that dependency failed or was stopped early and will not run here.
    A trial in `after` that is not queued here has finished before."""

    def __init__(self, trials: list[QueuedTrial], done: set[str] = frozenset()) -> None:
        self.order = {trial.name: index for index, trial in enumerate(trials)}
        self.priority = chain_seconds(trials)
        self.waiting: dict[str, list[str]] = {}  # dependency -> trials waiting for it
        self.missing: dict[str, int] = {}  # trial -> dependencies and `after` trials it still waits for
        self.awaited: dict[str, list[str]] = {}  # trial -> trials whose `after` lists it
        self.dropped: set[str] = set()
        self.heap: list[tuple[float, int, str]] = []
        self.pending = 0  # trials queued or waiting, not yet handed out
        for trial in trials:
            if trial.name in done:
                continue
            self.pending += 1
            left = [need for need in trial.needs if need not in done]
            before = [name for name in trial.after if name in self.order and name not in done]
            if not left and not before:
                self._push(trial.name)
            self.missing[trial.name] = len(left) + len(before)
            for need in left:
                self.waiting.setdefault(need, []).append(trial.name)
            for name in before:
                self.awaited.setdefault(name, []).append(trial.name)
        self.unrunnable = {dependency: dropped for dependency in list(self.waiting) if dependency not in self.order
                           for dropped in [self.failed(dependency)] if dropped}

    def _push(self, name: str) -> None:
        heapq.heappush(self.heap, (-self.priority[name], self.order[name], name))

    def pop(self) -> str | None:
        """The next runnable trial, or None when every trial left waits for one still running."""
        if not self.heap:
            return None
        self.pending -= 1
        return heapq.heappop(self.heap)[2]

    def _release(self, name: str) -> None:
        self.missing[name] -= 1
        if not self.missing[name] and name not in self.dropped:
            self._push(name)

    def _finished(self, name: str) -> None:
        for waiter in self.awaited.pop(name, []):
            self._release(waiter)

    def completed(self, name: str) -> None:
        for dependent in self.waiting.pop(name, []):
            self._release(dependent)
        self._finished(name)

    def failed(self, name: str) -> list[str]:
        """Drop every trial that needs `name`, transitively; returns them in spec order. `name` and the
        dropped trials count as finished for the trials that wait for them (`after`)."""
        dropped, stack = [], list(self.waiting.pop(name, []))
        while stack:
            dependent = stack.pop()
            if dependent in self.dropped:  # it needs several trials that failed
                continue
            self.dropped.add(dependent)
            dropped.append(dependent)
            stack += self.waiting.pop(dependent, [])
        self.pending -= len(dropped)
        for finished in [name, *dropped]:
            self._finished(finished)
        return sorted(dropped, key=self.order.__getitem__)

    @property
    def exhausted(self) -> bool:
        """Nothing is left to hand out, now or later."""
        return self.pending == 0
