"""Scheduling strategies: which runnable thread runs next.

The runtime asks its strategy at every switch point. A strategy sees only thread indices and
whether the running thread stands at a synchronisation point (a primitive operation, a
cross-thread hand-off, a loop step) or at a plain line, so it knows nothing about brokers,
Hypothesis or asyncio: choices come in, the runtime executes them.

``PreemptionSchedule`` is the strategy the state machine uses. It is *data*, drawn by Hypothesis
on the test's own thread as part of a ``RunInterleaved`` operation, so it is recorded, shrunk and
replayed with the rest of the example and printed in the falsifying steps, e.g.
``RunInterleaved(schedule=PreemptionSchedule(first=1, preemptions=((3, 0, True),)))``.

Between preemptions the running thread keeps running until it blocks or finishes; then the next
runnable thread in index order takes over. Each preemption ``(after, to, at_sync)`` says: once
``after`` more switch points have passed (counting only synchronisation points when ``at_sync``),
switch from the running thread to ``to`` (an index into the *other* runnable threads, modulo
their number). Counting synchronisation points reaches the window between two critical sections
in a few steps; counting every line reaches races on unlocked state. An empty list means no
preemption at all, so Hypothesis, which shrinks lists by deleting elements and integers towards
zero, shrinks a failure towards the fewest and earliest preemptions, as preemption-bounded
search does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hypothesis import strategies as st

MAX_PREEMPTIONS = 16
MAX_LINE_GAP = 8
MAX_SYNC_GAP = 2

Preemption = tuple[int, int, bool]


class SchedulingStrategy(Protocol):
    """Picks the next thread. ``runnable`` is sorted and never empty; ``at_sync`` tells whether
    the running thread (if any) stands at a synchronisation point.

    ``choose`` is called on whichever thread is running (a managed thread at its own switch
    point, or the controller), one call at a time: it must be a pure function of its state and
    arguments, and must not draw from Hypothesis, whose draws belong to the test's thread."""

    def choose(self, runnable: Sequence[int], current: int | None, at_sync: bool) -> int: ...


@dataclass(frozen=True)
class PreemptionSchedule:
    """A preemption-bounded schedule; see the module docstring."""

    first: int = 0
    preemptions: tuple[Preemption, ...] = ()

    def start(self) -> PreemptionCursor:
        """A fresh cursor, so one schedule value can be executed any number of times."""
        return PreemptionCursor(self)


@dataclass
class PreemptionCursor:
    """The executing state of a ``PreemptionSchedule``."""

    schedule: PreemptionSchedule
    _next: int = 0
    _countdown: int | None = None
    alternatives: list[int] = field(default_factory=list)
    """For the first thread and each preemption taken, in order, how many threads it could
    have picked: what an explorer needs to know which schedules are worth trying next
    (``stateful.exhaustive``)."""

    def choose(self, runnable: Sequence[int], current: int | None, at_sync: bool) -> int:
        if not self.alternatives:
            self._arm()
            return self._chosen(runnable[self.schedule.first % len(runnable)], len(runnable))
        if self._countdown is not None and (at_sync or not self._pending()[2]):
            self._countdown -= 1
        if current is not None and current in runnable:
            if self._countdown is not None and self._countdown < 0 and len(runnable) > 1:
                _, to, _ = self._pending()
                others = [index for index in runnable if index != current]
                self._next += 1
                self._arm()
                return self._chosen(others[to % len(others)], len(others))
            return current
        # Forced switch (the running thread blocked or finished): round-robin after it, so the
        # default order does not starve the highest-numbered thread.
        if current is not None:
            later = [index for index in runnable if index > current]
            if later:
                return later[0]
        return runnable[0]

    def _chosen(self, thread: int, alternatives: int) -> int:
        self.alternatives.append(alternatives)
        return thread

    def _pending(self) -> Preemption:
        return self.schedule.preemptions[self._next]

    def _arm(self) -> None:
        if self._next < len(self.schedule.preemptions):
            self._countdown = self._pending()[0]
        else:
            self._countdown = None


class RunToCompletion:
    """No preemption: each thread runs until it blocks or finishes. Used to settle and drain."""

    def choose(self, runnable: Sequence[int], current: int | None, at_sync: bool) -> int:
        return current if current is not None and current in runnable else runnable[0]


def preemption_schedules(
    max_preemptions: int = MAX_PREEMPTIONS,
) -> st.SearchStrategy[PreemptionSchedule]:
    """Hypothesis strategy for ``PreemptionSchedule``: a few preemptions, each counted in
    synchronisation points or in lines, with gaps that span an operation or two."""
    sync_gap = st.one_of(st.integers(0, MAX_SYNC_GAP), st.integers(0, 4 * MAX_SYNC_GAP))
    line_gap = st.one_of(st.integers(0, MAX_LINE_GAP), st.integers(0, 5 * MAX_LINE_GAP))
    preemption = st.one_of(
        st.tuples(sync_gap, st.integers(0, 3), st.just(True)),
        st.tuples(line_gap, st.integers(0, 3), st.just(False)),
    )
    return st.builds(
        PreemptionSchedule,
        first=st.integers(0, 3),
        preemptions=st.lists(preemption, max_size=max_preemptions).map(tuple),
    )
