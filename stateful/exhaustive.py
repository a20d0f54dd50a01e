"""Exhaustive exploration within a preemption bound: every schedule of one small scenario.

Random schedules find a race whose window is wide, or narrow but reached by one or two
preemptions. A race that needs three preemptions, each at one of a few synchronisation points
(two threads that both create a run's lock lazily, then interleave inside the critical sections
that lock should have made exclusive), is one schedule in several hundred of that size, and
sampling rarely draws it. Enumerating finds it every time: most concurrency bugs need few
threads, few operations and few preemptions (the small-scope hypothesis behind CHESS's
preemption bounding), so trying *every* schedule of a race between two operations, up to a
small bound, is both cheap and thorough.

``explore(execute, max_preemptions, max_gap)`` enumerates ``PreemptionSchedule`` values, fewest
preemptions first, then earliest: the schedules without a preemption (one per thread that can
run first), then every one-preemption extension of those, and so on. ``execute`` runs the
scenario under one schedule from a fresh start and returns the cursor it ran with; the first
exception it raises propagates, so the first failure found has the fewest preemptions.

Preemptions are counted in synchronisation points (``stateful.strategy``): they are where
threads hand each other the state a lock guards, and there are few enough of them to enumerate.
Races on unguarded state, between two plain lines, are left to the random schedules of the
state machine, which reach them easily. Each preemption comes at most ``max_gap``
synchronisation points after the previous switch, which bounds the enumeration for brokers with
many locks. What each execution chose (``PreemptionCursor.alternatives``) prunes it:

* a preemption that was not taken (the threads finished before its countdown ran out) is not
  taken with a longer countdown either, so the gaps at that position end there;
* a preemption's target is enumerated only over the threads that were runnable then.

After a thread blocks or finishes, the next one is the next in round-robin order, as under every
``PreemptionSchedule``: that hand-over is not a choice, so it is not explored.

This module knows nothing about brokers: schedules out, the record of choices in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from stateful.strategy import PreemptionCursor, PreemptionSchedule

Execute = Callable[[PreemptionSchedule], PreemptionCursor]


def explore(execute: Execute, max_preemptions: int, max_gap: int) -> int:
    """Execute every schedule within ``max_preemptions``, each preemption at most ``max_gap``
    synchronisation points after the previous switch; return how many were executed."""
    if max_preemptions < 0 or max_gap < 0:
        raise ValueError(f"bounds must be >= 0, not {max_preemptions} and {max_gap}")
    explorer = _Explorer(execute, max_gap)
    frontier = list(explorer.first_choices())
    for _ in range(max_preemptions):
        frontier = [longer for base in frontier for longer in explorer.extensions(base)]
    return explorer.executed


class _Explorer:
    def __init__(self, execute: Execute, max_gap: int) -> None:
        self._execute = execute
        self._max_gap = max_gap
        self.executed = 0

    def first_choices(self) -> Iterator[PreemptionSchedule]:
        """The schedules without preemption, one per thread runnable at the start."""
        alternatives = 1
        first = 0
        while first < alternatives:
            schedule = PreemptionSchedule(first=first)
            cursor = self._run(schedule)
            alternatives = cursor.alternatives[0] if cursor.alternatives else 1
            yield schedule
            first += 1

    def extensions(self, base: PreemptionSchedule) -> Iterator[PreemptionSchedule]:
        """``base`` with one more preemption, at every gap and to every thread it can reach."""
        depth = len(base.preemptions) + 1
        for gap in range(self._max_gap + 1):
            alternatives = 1
            to = 0
            while to < alternatives:
                schedule = PreemptionSchedule(base.first, (*base.preemptions, (gap, to, True)))
                cursor = self._run(schedule)
                if len(cursor.alternatives) <= depth:
                    return  # not taken, so not with a longer gap either
                alternatives = cursor.alternatives[depth]
                yield schedule
                to += 1

    def _run(self, schedule: PreemptionSchedule) -> PreemptionCursor:
        self.executed += 1
        return self._execute(schedule)
