"""``stateful.exhaustive.explore`` executes every interleaving that schedules within its bounds
can make, and only those, fewest preemptions first.

The program here is three threads of a few steps each, plain lines and synchronisation points
in turn, run by a stand-in for the runtime that asks the cursor before each step as
``stateful.runtime`` does. What schedules within the bounds can make is found by brute force:
every schedule with every first thread, gap and target up to well past the program's length.
"""

import itertools

import pytest

from stateful.exhaustive import explore
from stateful.strategy import PreemptionCursor, PreemptionSchedule

LENGTHS = (3, 2, 1)
Order = tuple[int, ...]


def run(schedule: PreemptionSchedule, executed: list[Order]) -> PreemptionCursor:
    """Run threads of ``LENGTHS`` steps under ``schedule``; record the interleaving."""
    cursor = schedule.start()
    left = list(LENGTHS)
    current: int | None = None
    order = []
    while any(left):
        runnable = [thread for thread, steps in enumerate(left) if steps]
        # Where the running thread stands: its second step is a synchronisation point, its
        # first and third are plain lines.
        at_sync = current is not None and (LENGTHS[current] - left[current]) % 2 == 1
        current = cursor.choose(runnable, current, at_sync)
        order.append(current)
        left[current] -= 1
    executed.append(tuple(order))
    return cursor


def explored(max_preemptions: int, max_gap: int) -> list[Order]:
    executed: list[Order] = []
    explore(lambda schedule: run(schedule, executed), max_preemptions, max_gap)
    return executed


def brute_force(max_preemptions: int, max_gap: int) -> dict[Order, int]:
    """Every interleaving the bounded schedules make, with the fewest preemptions taken."""
    fewest: dict[Order, int] = {}
    preemption = [(gap, to, True) for gap in range(max_gap + 1) for to in range(2)]
    for first in range(len(LENGTHS)):
        for n in range(max_preemptions + 1):
            for preemptions in itertools.product(preemption, repeat=n):
                executed: list[Order] = []
                cursor = run(PreemptionSchedule(first, preemptions), executed)
                taken = len(cursor.alternatives) - 1
                order = executed[0]
                fewest[order] = min(fewest.get(order, taken), taken)
    return fewest


@pytest.mark.parametrize("bound", [0, 1, 2, 3])
def test_every_interleaving_within_the_bound_is_executed_and_no_other(bound: int) -> None:
    assert set(explored(bound, max_gap=6)) == set(brute_force(bound, max_gap=6))


def test_the_gap_bound_leaves_out_later_preemptions() -> None:
    near = set(explored(2, max_gap=0))
    assert near == set(brute_force(2, max_gap=0))
    assert near < set(explored(2, max_gap=6))


def test_fewer_preemptions_come_first() -> None:
    fewest = brute_force(3, max_gap=6)
    # Each interleaving the first time it is executed (pruning executes some again).
    firsts = dict.fromkeys(explored(3, max_gap=6))
    counts = [fewest[order] for order in firsts]
    assert counts == sorted(counts)


def test_the_first_failure_propagates() -> None:
    def execute(schedule: PreemptionSchedule) -> PreemptionCursor:
        cursor = run(schedule, [])
        if len(cursor.alternatives) == 3:  # two preemptions taken
            raise AssertionError(schedule)
        return cursor

    with pytest.raises(AssertionError) as failure:
        explore(execute, max_preemptions=3, max_gap=6)
    assert len(failure.value.args[0].preemptions) == 2


def test_a_preemption_not_taken_is_not_tried_with_a_longer_gap() -> None:
    not_taken: list[PreemptionSchedule] = []

    def execute(schedule: PreemptionSchedule) -> PreemptionCursor:
        cursor = run(schedule, [])
        if len(cursor.alternatives) <= len(schedule.preemptions):
            not_taken.append(PreemptionSchedule(schedule.first, schedule.preemptions[:-1]))
        return cursor

    explore(execute, max_preemptions=3, max_gap=6)
    assert not_taken and len(not_taken) == len(set(not_taken))
