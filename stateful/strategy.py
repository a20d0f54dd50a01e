"""Scheduling strategies: which runnable thread runs next.

The runtime asks its strategy at every switch point. A strategy sees only thread indices and
whether the running thread stands at a synchronisation point (a primitive operation, a
cross-thread hand-off, a loop step) or at a plain line, so it knows nothing about brokers,
Hypothesis or asyncio: choices come in, the runtime executes them.

The state machine's strategies are *data*, drawn by Hypothesis on the test's own thread as part
of a ``RunInterleaved`` operation, so they are recorded, shrunk and replayed with the rest of
the example and printed in the falsifying steps. There are two kinds; a ``RunInterleaved`` runs
either, and the machine draws preemption schedules (below: why not PCT).

``PreemptionSchedule``, e.g.
``RunInterleaved(schedule=PreemptionSchedule(first=1, preemptions=((3, 0, True),)))``. Between
preemptions the running thread keeps running until it blocks or finishes; then the next
runnable thread in index order takes over. Each preemption ``(after, to, at_sync)`` says: once
``after`` more switch points have passed (counting only synchronisation points when ``at_sync``),
switch from the running thread to ``to`` (an index into the *other* runnable threads, modulo
their number). Counting synchronisation points reaches the window between two critical sections
in a few steps; counting every line reaches races on unlocked state. An empty list means no
preemption at all, so Hypothesis, which shrinks lists by deleting elements and integers towards
zero, shrinks a failure towards the fewest and earliest preemptions, as preemption-bounded
search does.

``PctSchedule``, e.g.
``RunInterleaved(schedule=PctSchedule(order=(1, 0, 2, 3), changes=(0, 1), lines=False))``: PCT,
probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010; Shuttle's ``PctScheduler``).
Every thread has a priority, and at every switch point the highest-priority runnable thread
runs, so a thread that becomes runnable again (the lock it waited for released, a callback
posted to the loop) takes over at once if it ranks higher. ``order`` lists threads from the
highest initial priority down; threads it does not list (ones started later) rank below the
listed ones in index order. A thread gets its priority when it first appears, from these alone,
whenever that is. ``changes`` are the change points, each a number of switch points after the
previous one (counting synchronisation points only, unless ``lines``): at each, the running
thread is lowered below every other, the last one lowered lowest. A bug of depth ``d`` (``d``
orderings between threads that must all hold) is found by ``d - 1`` well-placed change points,
and the priorities carry the threads back and forth between them for free: two threads that
both make a run's lock lazily and then overlap inside their critical sections need three
preemptions but two change points. It shrinks towards no change points and the threads in index
order (``st.permutations`` shrinks towards the identity).

The machine does not draw PCT schedules. On one round alone (subscribe against close on a run
nobody has touched) PCT finds a lazily made lock race more often than preemption schedules do,
but mixed into the machine's draws (in half the rounds, or in half the rounds that hold a run's
first operations) it found those races no sooner over 20 seeds and the batching races later,
since a loop of high priority takes each flush as soon as it is posted (``python -m bench
search``; the README's "PCT schedules"). ``pct_schedules`` draws them for other uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hypothesis import strategies as st

MAX_PREEMPTIONS = 16
MAX_LINE_GAP = 8
MAX_SYNC_GAP = 2
PCT_THREADS = 4
MAX_CHANGE_POINTS = 3

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


@dataclass(frozen=True)
class PctSchedule:
    """A PCT schedule: initial priorities and change points; see the module docstring."""

    order: tuple[int, ...] = ()
    changes: tuple[int, ...] = ()
    lines: bool = False

    def start(self) -> PctCursor:
        """A fresh cursor, so one schedule value can be executed any number of times."""
        return PctCursor(self)

    def rank(self, thread: int) -> tuple[int, int]:
        """The initial priority of ``thread`` as a sort key (smaller runs first): its place in
        ``order``, and after every thread listed there, the others in index order."""
        if thread in self.order:
            return (0, self.order.index(thread))
        return (1, thread)


@dataclass
class PctCursor:
    """The executing state of a ``PctSchedule``."""

    schedule: PctSchedule
    priority: list[int] = field(default_factory=list)
    """Every thread seen so far, highest priority first: those no change point has lowered by
    their initial priority, then the lowered ones, the most recently lowered last."""
    changes_taken: int = 0
    _lowered: set[int] = field(default_factory=set)
    _countdown: int | None = None
    _started: bool = False

    def choose(self, runnable: Sequence[int], current: int | None, at_sync: bool) -> int:
        if runnable[-1] >= len(self.priority):
            self._admit(runnable[-1])
        if not self._started:
            self._started = True
            self._arm()
        elif self._countdown is not None and current is not None and current in runnable:
            if at_sync or self.schedule.lines:
                self._countdown -= 1
            if self._countdown < 0:
                self._lower(current)
                self.changes_taken += 1
                self._arm()
        return next(thread for thread in self.priority if thread in runnable)

    def _admit(self, highest: int) -> None:
        """Give every thread up to ``highest`` its initial priority, in index order, so that a
        thread's priority depends on the schedule alone, not on when it first became runnable.
        A thread that appears after a change point still ranks above every lowered thread."""
        for thread in range(len(self.priority), highest + 1):
            rank = self.schedule.rank(thread)
            unlowered = self.priority[: len(self.priority) - len(self._lowered)]
            at = sum(1 for other in unlowered if self.schedule.rank(other) < rank)
            self.priority.insert(at, thread)

    def _lower(self, thread: int) -> None:
        self.priority.remove(thread)
        self.priority.append(thread)
        self._lowered.add(thread)

    def _arm(self) -> None:
        changes = self.schedule.changes
        taken = self.changes_taken
        self._countdown = changes[taken] if taken < len(changes) else None


class RunToCompletion:
    """No preemption: each thread runs until it blocks or finishes. Used to settle and drain."""

    def choose(self, runnable: Sequence[int], current: int | None, at_sync: bool) -> int:
        return current if current is not None and current in runnable else runnable[0]


def _sync_gaps() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(0, MAX_SYNC_GAP), st.integers(0, 4 * MAX_SYNC_GAP))


def _line_gaps() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(0, MAX_LINE_GAP), st.integers(0, 5 * MAX_LINE_GAP))


def preemption_schedules(
    max_preemptions: int = MAX_PREEMPTIONS,
) -> st.SearchStrategy[PreemptionSchedule]:
    """Hypothesis strategy for ``PreemptionSchedule``: a few preemptions, each counted in
    synchronisation points or in lines, with gaps that span an operation or two."""
    preemption = st.one_of(
        st.tuples(_sync_gaps(), st.integers(0, 3), st.just(True)),
        st.tuples(_line_gaps(), st.integers(0, 3), st.just(False)),
    )
    return st.builds(
        PreemptionSchedule,
        first=st.integers(0, 3),
        preemptions=st.lists(preemption, max_size=max_preemptions).map(tuple),
    )


def pct_schedules(max_changes: int = MAX_CHANGE_POINTS) -> st.SearchStrategy[PctSchedule]:
    """Hypothesis strategy for ``PctSchedule``: a random priority order of the first
    ``PCT_THREADS`` threads and up to ``max_changes`` change points (depth ``max_changes + 1``),
    all counted in synchronisation points or all in lines, with the gaps of
    ``preemption_schedules``."""
    order = st.permutations(range(PCT_THREADS)).map(tuple)
    return st.one_of(
        st.builds(
            PctSchedule,
            order=order,
            changes=st.lists(_sync_gaps(), max_size=max_changes).map(tuple),
            lines=st.just(False),
        ),
        st.builds(
            PctSchedule,
            order=order,
            changes=st.lists(_line_gaps(), max_size=max_changes).map(tuple),
            lines=st.just(True),
        ),
    )
