"""``PctSchedule``: the highest-priority runnable thread runs, each change point lowers the
running thread below every other, threads that appear later get their priority from the
schedule alone, the same schedule makes the same choices, and Hypothesis shrinks it towards no
change points and the threads in index order.

The cursor is first driven with made-up runnable lists, as the runtime calls it; then the
runtime runs a race of depth 3 (``scheduler_targets.LazyLocks``) that no schedule without
preemptions and no PCT schedule of depth 2 finds, and PCT schedules of depth 3 do.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

from hypothesis import find

from stateful.primitives import controlled
from stateful.runtime import Runtime, running
from stateful.strategy import (
    PCT_THREADS,
    PctSchedule,
    PreemptionSchedule,
    SchedulingStrategy,
    pct_schedules,
)
from tests import scheduler_targets as targets

WATCHDOG_SECONDS = 2.0


def choices(
    schedule: PctSchedule, runnable: Sequence[int], calls: int, *, at_sync: bool = True
) -> list[int]:
    """What a fresh cursor chooses over ``calls`` switch points with ``runnable`` fixed, the
    chosen thread running from one point to the next."""
    cursor = schedule.start()
    chosen: list[int] = []
    current = None
    for _ in range(calls):
        current = cursor.choose(runnable, current, at_sync)
        chosen.append(current)
    return chosen


# -- the cursor ------------------------------------------------------------------------------------


def test_the_highest_priority_runnable_thread_runs() -> None:
    schedule = PctSchedule(order=(2, 0, 1))
    assert choices(schedule, [0, 1, 2], 5) == [2] * 5
    assert choices(schedule, [0, 1], 5) == [0] * 5
    assert choices(schedule, [1], 3) == [1] * 3


def test_a_thread_of_higher_priority_takes_over_as_soon_as_it_can_run() -> None:
    cursor = PctSchedule(order=(1, 0)).start()
    assert cursor.choose([0], None, False) == 0
    assert cursor.choose([0], 0, False) == 0
    # Thread 1 became runnable (a lock it waited for was released, say): it runs at once.
    assert cursor.choose([0, 1], 0, False) == 1


def test_each_change_point_lowers_the_running_thread_below_every_other() -> None:
    # Two synchronisation points pass, the change comes at the third: 0 goes below 1 and 2,
    # then one more and 1 goes below 0.
    schedule = PctSchedule(order=(0, 1, 2), changes=(2, 0))
    assert choices(schedule, [0, 1, 2], 6) == [0, 0, 0, 1, 2, 2]
    cursor = schedule.start()
    current = None
    for _ in range(6):
        current = cursor.choose([0, 1, 2], current, True)
    assert cursor.priority == [2, 0, 1]
    assert cursor.changes_taken == 2


def test_change_points_count_synchronisation_points_unless_they_count_lines() -> None:
    at_lines = PctSchedule(order=(0, 1), changes=(1,))
    assert choices(at_lines, [0, 1], 6, at_sync=False) == [0] * 6
    assert choices(at_lines, [0, 1], 6, at_sync=True) == [0, 0, 1, 1, 1, 1]
    every_line = PctSchedule(order=(0, 1), changes=(1,), lines=True)
    assert choices(every_line, [0, 1], 6, at_sync=False) == [0, 0, 1, 1, 1, 1]


def test_a_change_point_passes_only_while_the_thread_it_lowers_is_running() -> None:
    cursor = PctSchedule(order=(0, 1), changes=(0,)).start()
    assert cursor.choose([0, 1], None, True) == 0
    # 0 blocked: the switch point of the forced switch to 1 is not one where 0 runs.
    assert cursor.choose([1], 0, True) == 1
    assert cursor.changes_taken == 0
    assert cursor.choose([0, 1], 1, True) == 0  # the change lowers 1, and 0 can run again
    assert cursor.changes_taken == 1


def test_a_thread_that_appears_later_gets_its_priority_from_the_schedule() -> None:
    # Thread 3 is listed first: it runs as soon as it exists, whenever that is.
    for appears_at in (1, 4):
        cursor = PctSchedule(order=(3, 0, 1, 2)).start()
        runs = [cursor.choose([0, 1] if i < appears_at else [0, 1, 3], 0, False) for i in range(6)]
        assert runs == [0] * appears_at + [3] * (6 - appears_at)
    # Threads the order does not list rank below the listed ones, in index order, yet above
    # every thread a change point has lowered.
    cursor = PctSchedule(order=(1, 0), changes=(0,)).start()
    assert cursor.choose([0, 1], None, True) == 1
    assert cursor.choose([0, 1], 1, True) == 0  # 1 lowered
    assert cursor.choose([0, 1, 5], 0, True) == 0
    assert cursor.priority == [0, 2, 3, 4, 5, 1]


def test_the_same_schedule_makes_the_same_choices() -> None:
    schedule = PctSchedule(order=(2, 1, 0, 3), changes=(3, 0, 5))
    calls = [([0, 1, 2], True), ([0, 2], False), ([0, 1, 2], True), ([1, 2], True)] * 4

    def run() -> list[int]:
        cursor = schedule.start()
        current = None
        out = []
        for runnable, at_sync in calls:
            current = cursor.choose(runnable, current, at_sync)
            out.append(current)
        return out

    first = run()
    assert run() == first
    assert len(set(first)) > 1  # the change points made it switch


# -- as Hypothesis data ----------------------------------------------------------------------------


def test_it_shrinks_to_no_change_points_and_the_threads_in_index_order() -> None:
    identity = tuple(range(PCT_THREADS))
    assert find(pct_schedules(), lambda s: True) == PctSchedule(order=identity)
    assert find(pct_schedules(), lambda s: len(s.changes) >= 2) == PctSchedule(
        order=identity, changes=(0, 0)
    )


def test_it_prints_as_it_is_written() -> None:
    schedule = PctSchedule(order=(1, 0, 2, 3), changes=(0, 4), lines=True)
    assert repr(schedule) == "PctSchedule(order=(1, 0, 2, 3), changes=(0, 4), lines=True)"
    assert eval(repr(schedule), {"PctSchedule": PctSchedule}) == schedule


# -- under the runtime: a race of depth 3 ----------------------------------------------------------


def overlapped(strategy: SchedulingStrategy) -> bool:
    """Whether two threads ran ``LazyLocks.critical_section`` on one key at once."""
    sections = targets.LazyLocks()
    runtime = Runtime([targets.__file__], watchdog_seconds=WATCHDOG_SECONDS)
    with controlled([targets]), running(runtime):
        for name in ("a", "b"):
            runtime.worker(name).submit(
                functools.partial(sections.critical_section, "k", name), f"enter on {name}"
            )
        runtime.run(strategy)
    assert sorted(sections.log) == ["a in", "a out", "b in", "b out"]
    return sections.overlapped()


def pct_of_depth(depth: int, order: tuple[int, ...], max_gap: int) -> list[PctSchedule]:
    """Every PCT schedule of two threads with ``depth - 1`` change points counted in lines,
    each at most ``max_gap`` lines after the previous one, fewest lines first."""
    gaps = itertools.product(range(max_gap + 1), repeat=depth - 1)
    return [PctSchedule(order=order, changes=changes, lines=True) for changes in gaps]


def test_pct_of_depth_3_finds_a_race_that_no_shallower_schedule_finds() -> None:
    assert not any(overlapped(PreemptionSchedule(first=first).start()) for first in (0, 1))
    for order in ((0, 1), (1, 0)):
        assert not any(overlapped(s.start()) for s in pct_of_depth(2, order, max_gap=16))
        # Either thread's lookup can be the one that comes first.
        assert any(overlapped(s.start()) for s in pct_of_depth(3, order, max_gap=12))
