"""Regression: a subscriber that registered while close ran never got done (check-then-act).

Found by the state machine (``ci`` profile) in
``tests.mutants.mutant_subscribe_check_then_act:SubscribeCheckThenActBroker``: subscribe asks
"is the run done?" and registers in two separate critical sections, and a close that runs
between them finds nobody to send done to. Hypothesis's shrunk example first closed and replaced
three runs; the steps below are that example cut down by hand to the same race on the first run
(the preemption after two synchronisation points lets close run inside subscribe's window).
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

FOUND_IN = "tests.mutants.mutant_subscribe_check_then_act:SubscribeCheckThenActBroker"


def steps(state: Replay) -> None:
    state.step(op=Subscribe(slot=0))
    state.step(op=Close(producer=0, slot=0))
    state.step(op=RunInterleaved(schedule=PreemptionSchedule(first=0, preemptions=((2, 0, True),))))


def test_subscriber_registered_during_close_hangs() -> None:
    with pytest.raises(ScheduleFailure, match=r"^\[no-hang-after-done\]"):
        replay_steps(steps, FOUND_IN)
    replay_steps(steps, DEFAULT_IMPL)
