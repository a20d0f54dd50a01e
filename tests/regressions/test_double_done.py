"""Regression: a second ``close`` of a run sent every subscriber a second done.

Found by the state machine (``ci`` profile) in the original design,
``tests.mutants.mutant_original_design:OriginalRunBroker``. The steps are the shrunk example
Hypothesis printed, copied as they were.
"""

import pytest

from stateful.errors import ScheduleFailure
from stateful.impl import DEFAULT_IMPL
from stateful.regression import (
    Close,
    PreemptionSchedule,
    Replay,
    RunInterleaved,
    Subscribe,
    replay_steps,
)

FOUND_IN = "tests.mutants.mutant_original_design:OriginalRunBroker"


def steps(state: Replay) -> None:
    state.step(op=Close(producer=0, slot=0))
    state.step(op=Subscribe(slot=0))
    state.step(op=Close(producer=0, slot=0))
    state.step(
        op=RunInterleaved(
            schedule=PreemptionSchedule(
                first=0,  # or any other generated value
                preemptions=(),  # or any other generated value
            )
        )
    )


def test_double_done_on_second_close() -> None:
    with pytest.raises(ScheduleFailure, match=r"^\[done-exactly-once-last\]"):
        replay_steps(steps, FOUND_IN)
    replay_steps(steps, DEFAULT_IMPL)
