"""Regression: one subscriber leaving dropped every subscriber of the run, so events were lost.

Found by the state machine (``ci`` profile) in
``tests.mutants.mutant_unsubscribe_drops_all:UnsubscribeDropsAllBroker``. The steps are the
shrunk example Hypothesis printed, copied as they were.
"""

import pytest

from stateful.errors import ScheduleFailure
from stateful.impl import DEFAULT_IMPL
from stateful.regression import (
    Emit,
    PreemptionSchedule,
    Replay,
    RunInterleaved,
    Subscribe,
    Unsubscribe,
    replay_steps,
)

FOUND_IN = "tests.mutants.mutant_unsubscribe_drops_all:UnsubscribeDropsAllBroker"


def steps(state: Replay) -> None:
    state.step(op=Subscribe(slot=0))
    state.step(op=Unsubscribe(subscriber="s1"))
    state.step(op=Emit(producer=0, slot=0, count=1))
    state.step(op=Subscribe(slot=0))
    state.step(
        op=RunInterleaved(
            schedule=PreemptionSchedule(
                first=0,  # or any other generated value
                preemptions=(),  # or any other generated value
            )
        )
    )


def test_unsubscribe_drops_other_subscribers() -> None:
    with pytest.raises(ScheduleFailure, match=r"^\[no-lost-events\]"):
        replay_steps(steps, FOUND_IN)
    replay_steps(steps, DEFAULT_IMPL)
