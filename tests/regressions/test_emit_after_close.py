"""Regression: an event emitted after ``close`` returned still reached a subscriber, after done.

Found by the state machine (``ci`` profile) in
``tests.mutants.mutant_emit_after_close:EmitAfterCloseBroker``. The steps are the shrunk example
Hypothesis printed, copied as they were.
"""

import pytest

from stateful.errors import ScheduleFailure
from stateful.impl import DEFAULT_IMPL
from stateful.regression import (
    Close,
    Emit,
    PreemptionSchedule,
    Replay,
    RunInterleaved,
    Subscribe,
    replay_steps,
)

FOUND_IN = "tests.mutants.mutant_emit_after_close:EmitAfterCloseBroker"


def steps(state: Replay) -> None:
    state.step(op=Subscribe(slot=0))
    state.step(op=Close(producer=0, slot=0))
    state.step(op=Emit(producer=0, slot=0, count=1))
    state.step(
        op=RunInterleaved(
            schedule=PreemptionSchedule(
                first=0,  # or any other generated value
                preemptions=(),  # or any other generated value
            )
        )
    )


def test_event_delivered_after_done() -> None:
    with pytest.raises(ScheduleFailure, match=r"^\[nothing-after-done\]"):
        replay_steps(steps, FOUND_IN)
    replay_steps(steps, DEFAULT_IMPL)
