"""Regression: when the last subscriber of a run left, the run's empty entry stayed in the map.

Found by the state machine (``ci`` profile) in
``tests.mutants.mutant_empty_set_left:EmptySetLeftBroker``. The steps are the shrunk example
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
    Unsubscribe,
    replay_steps,
)

FOUND_IN = "tests.mutants.mutant_empty_set_left:EmptySetLeftBroker"


def steps(state: Replay) -> None:
    state.step(op=Close(producer=0, slot=0))
    state.step(op=Subscribe(slot=1))
    state.step(
        op=RunInterleaved(
            schedule=PreemptionSchedule(
                first=0,  # or any other generated value
                preemptions=(),  # or any other generated value
            )
        )
    )
    state.step(op=Unsubscribe(subscriber="s1"))
    state.step(op=Close(producer=0, slot=0))
    state.step(
        op=RunInterleaved(
            schedule=PreemptionSchedule(
                first=0,  # or any other generated value
                preemptions=(),  # or any other generated value
            )
        )
    )


def test_empty_subscriber_set_left_in_map() -> None:
    with pytest.raises(ScheduleFailure, match=r"^\[subscriber-map-cleanup\]"):
        replay_steps(steps, FOUND_IN)
    replay_steps(steps, DEFAULT_IMPL)
