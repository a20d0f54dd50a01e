"""``stateful.regression``: printed steps replay as Hypothesis ran them, and stale steps fail.

The regression tests beside this file rely on these properties: the invariants are checked
right after each step (not only at the end), the machine is always torn down, the printed lines
can be pasted unchanged, and a step the state machine has outgrown is an error, not a pass.
"""

import threading

import pytest

from stateful.errors import ScheduleFailure
from stateful.impl import DEFAULT_IMPL
from stateful.regression import PreemptionSchedule, Replay, StaleStep, drawn, replay, replay_steps

EMIT_AFTER_CLOSE = "tests.mutants.mutant_emit_after_close:EmitAfterCloseBroker"


def test_the_step_that_breaks_an_invariant_raises() -> None:
    with replay(EMIT_AFTER_CLOSE) as state:
        state.subscribe(slot=0)
        state.close(producer=0, slot=0)
        state.emit(count=1, producer=0, slot=0)
        with pytest.raises(ScheduleFailure, match=r"^\[nothing-after-done\]"):
            state.run_interleaved(schedule=PreemptionSchedule(first=0, preemptions=()))


def test_printed_lines_paste_unchanged() -> None:
    def printed(state: Replay) -> None:
        state.invariants_hold()
        subscribers_0 = state.subscribe(slot=0)
        state.invariants_hold()
        state.close(producer=0, slot=0)
        state.invariants_hold()
        state.emit(count=1, producer=0, slot=0)
        state.invariants_hold()
        state.run_interleaved(
            schedule=PreemptionSchedule(
                first=0,  # or any other generated value
                preemptions=(),  # or any other generated value
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
        state.subscribe(slot=0)
        state.close(producer=0, slot=0)
        state.emit(count=1, producer=0, slot=0)
        state.run_interleaved(schedule=PreemptionSchedule(first=0, preemptions=()))

    with pytest.raises(ScheduleFailure):
        replay_steps(steps, EMIT_AFTER_CLOSE)
    left = [thread.name for thread in set(threading.enumerate()) - before]
    assert left == [], f"threads of the replayed machine still running: {left}"


def test_a_step_the_machine_no_longer_has_is_an_error() -> None:
    with replay(DEFAULT_IMPL) as state, pytest.raises(StaleStep, match="no rule 'publish'"):
        state.publish(slot=0)


def test_a_step_whose_arguments_changed_is_an_error() -> None:
    with replay(DEFAULT_IMPL) as state, pytest.raises(StaleStep, match="slot"):
        state.emit(count=1, producer=0)


def test_a_step_whose_precondition_fails_is_an_error() -> None:
    # run_interleaved needs pending operations on two threads at least.
    with replay(DEFAULT_IMPL) as state, pytest.raises(StaleStep, match="precondition"):
        state.run_interleaved(schedule=PreemptionSchedule())


def test_drawn_values_stand_in_for_data_draws() -> None:
    with replay(DEFAULT_IMPL) as state:
        state.subscribe(slot=0)
        state.emit(count=2, producer=0, slot=0)
        state.run_interleaved(schedule=PreemptionSchedule())
        resumed = state.subscribe_from(data=drawn(1), slot=0)
        assert resumed.last_event_id == 1
        with pytest.raises(StaleStep, match="draws more values"):
            state.subscribe_from(data=drawn(), slot=0)
