"""Regression: a reconnecting subscriber missed the event emitted while it was being replayed to.

Found by the state machine (``ci`` profile) in
``tests.mutants.mutant_replay_hole:ReplayHoleBroker``: the reconnect is preempted between
reading the replay buffer and registering, an emit runs in that window, and the event falls
into the hole between replayed and live events. The steps are the shrunk example Hypothesis
printed, copied as they were.
"""

import pytest

from stateful.errors import ScheduleFailure
from stateful.impl import DEFAULT_IMPL
from stateful.regression import (
    Emit,
    PreemptionSchedule,
    Reconnect,
    Replay,
    RunInterleaved,
    Subscribe,
    replay_steps,
)

FOUND_IN = "tests.mutants.mutant_replay_hole:ReplayHoleBroker"


def steps(state: Replay) -> None:
    state.step(op=Subscribe(slot=0))
    state.step(op=Emit(producer=0, slot=0, count=1))
    state.step(op=RunInterleaved(schedule=PreemptionSchedule(first=0, preemptions=())))
    state.step(op=Emit(producer=0, slot=0, count=1))
    state.step(op=Reconnect(subscriber="s1"))
    state.step(
        op=RunInterleaved(
            schedule=PreemptionSchedule(
                first=0, preemptions=((0, 0, True), (0, 0, True), (0, 0, True))
            )
        )
    )


def test_hole_between_replayed_and_live_events() -> None:
    with pytest.raises(ScheduleFailure, match=r"^\[replay-seam\]"):
        replay_steps(steps, FOUND_IN)
    replay_steps(steps, DEFAULT_IMPL)
