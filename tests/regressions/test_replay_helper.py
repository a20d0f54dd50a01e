"""``stateful.regression``: printed steps replay as Hypothesis ran them, and stale steps fail.

The regression tests beside this file rely on these properties: the invariants are checked
right after each step (not only at the end), the machine is always torn down, the printed lines
can be pasted unchanged, and a step the state machine has outgrown is an error, not a pass.
"""

import threading

import pytest

from stateful.errors import ScheduleFailure
from stateful.impl import DEFAULT_IMPL
from stateful.regression import (
    Close,
    Emit,
    PreemptionSchedule,
    Replay,
    RunInterleaved,
    StaleStep,
    Stall,
    Subscribe,
    SubscribeFrom,
    Unsubscribe,
    replay,
    replay_steps,
)

EMIT_AFTER_CLOSE = "tests.mutants.mutant_emit_after_close:EmitAfterCloseBroker"


def test_the_step_that_breaks_an_invariant_raises() -> None:
    with replay(EMIT_AFTER_CLOSE) as state:
        state.step(op=Subscribe(slot=0))
        state.step(op=Close(producer=0, slot=0))
        state.step(op=Emit(producer=0, slot=0, count=1))
        with pytest.raises(ScheduleFailure, match=r"^\[nothing-after-done\]"):
            state.step(op=RunInterleaved(schedule=PreemptionSchedule(first=0, preemptions=())))


def test_printed_lines_paste_unchanged() -> None:
    def printed(state: Replay) -> None:
        state.leave_out(kinds=("Reconnect",))
        state.invariants_hold()
        state.step(op=Subscribe(slot=0))
        state.invariants_hold()
        state.step(op=Close(producer=0, slot=0))
        state.invariants_hold()
        state.step(op=Emit(producer=0, slot=0, count=1))
        state.invariants_hold()
        state.step(
            op=RunInterleaved(
                schedule=PreemptionSchedule(
                    first=0,  # or any other generated value
                    preemptions=(),  # or any other generated value
                )
            )
        )
        state.invariants_hold()
        state.teardown()

    with pytest.raises(ScheduleFailure, match=r"^\[nothing-after-done\]"):
        replay_steps(printed, EMIT_AFTER_CLOSE)
    replay_steps(printed, DEFAULT_IMPL)


def test_a_failed_replay_still_tears_the_machine_down() -> None:
    before = set(threading.enumerate())

    def steps(state: Replay) -> None:
        state.step(op=Subscribe(slot=0))
        state.step(op=Close(producer=0, slot=0))
        state.step(op=Emit(producer=0, slot=0, count=1))
        state.step(op=RunInterleaved(schedule=PreemptionSchedule(first=0, preemptions=())))

    with pytest.raises(ScheduleFailure):
        replay_steps(steps, EMIT_AFTER_CLOSE)
    left = [thread.name for thread in set(threading.enumerate()) - before]
    assert left == [], f"threads of the replayed machine still running: {left}"


def test_an_operation_not_possible_there_is_an_error() -> None:
    # A round needs operations queued on two threads at least.
    with replay(DEFAULT_IMPL) as state, pytest.raises(StaleStep, match="not possible here"):
        state.step(op=RunInterleaved(schedule=PreemptionSchedule()))


def test_a_kind_the_example_left_out_is_an_error() -> None:
    with replay(DEFAULT_IMPL) as state:
        state.leave_out(kinds=("Close",))
        with pytest.raises(StaleStep, match="not possible here"):
            state.step(op=Close(producer=0, slot=0))
        with pytest.raises(StaleStep, match=r"\['Emit'\] are not optional"):
            state.leave_out(kinds=("Emit",))


def test_an_operation_out_of_range_is_an_error() -> None:
    with replay(DEFAULT_IMPL) as state, pytest.raises(StaleStep, match="no producer 2"):
        state.step(op=Emit(producer=2, slot=0, count=1))


def test_subscribers_are_named_in_order_and_only_live_ones_can_be_named() -> None:
    with replay(DEFAULT_IMPL) as state:
        state.step(op=Subscribe(slot=0))
        state.step(op=Subscribe(slot=1))
        state.step(op=Unsubscribe(subscriber="s1"))
        assert [sub.run for sub in state.machine.history.subscribers] == ["r1", "r2"]
        with pytest.raises(StaleStep, match="no live subscriber named 's1'"):
            state.step(op=Stall(subscriber="s1"))
        state.step(op=Stall(subscriber="s2"))


def test_replay_from_counts_back_from_the_newest_settled_id() -> None:
    with replay(DEFAULT_IMPL) as state:
        state.step(op=Subscribe(slot=0))
        state.step(op=Emit(producer=0, slot=0, count=2))
        state.step(op=RunInterleaved(schedule=PreemptionSchedule()))
        state.step(op=SubscribeFrom(slot=0, back=1))
        assert state.machine.history.subscribers[-1].last_event_id == 1
        with pytest.raises(StaleStep, match="back=3, but 2 emits had run"):
            state.step(op=SubscribeFrom(slot=0, back=3))
