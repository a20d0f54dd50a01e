"""Replay: the same example gives the same interleaving, step by step; and when something the
scheduler does not control makes two runs of the same choices differ, that is reported as
nondeterminism naming where the runs parted, not as a bare Hypothesis ``Flaky``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as Settings
from hypothesis.errors import Flaky

import stateful.regression
from stateful.errors import Nondeterminism, ScheduleFailure
from stateful.impl import DEFAULT_IMPL
from stateful.machine import RunBrokerMachine, machine_for
from stateful.regression import (
    Close,
    Emit,
    PctSchedule,
    PreemptionSchedule,
    Replay,
    RunInterleaved,
    Subscribe,
    Unsubscribe,
    replay_steps,
)
from stateful.replay import LEDGER, ReplayLedger
from stateful.runner import run_machine
from stateful.trace import Entry, Mark, Position, Step
from tests import scheduler_targets as targets

CHECK_THEN_ACT = "tests.mutants.mutant_subscribe_check_then_act:SubscribeCheckThenActBroker"
LOCK_MADE_TWICE = "tests.mutants.mutant_run_lock_created_twice:RunLockCreatedTwiceBroker"
FORGETFUL = "tests.scheduler_targets:ForgetsTheFirstClose"
# The subclass adds only ``close``; the rest of the broker is traced and controlled too.
FORGETFUL_TRACE_MODULES = ("broker.core",)

Steps = Callable[[Replay], None]


def check_then_act_race(state: Replay) -> None:
    """The minimal failing example of the check-then-act mutant: close runs inside
    subscribe's window between its check and its registration."""
    state.step(op=Subscribe(slot=0))
    state.step(op=Close(producer=0, slot=0))
    state.step(op=RunInterleaved(schedule=PreemptionSchedule(first=0, preemptions=((2, 0, True),))))


def lock_made_twice_under_pct(state: Replay) -> None:
    """Subscribe and close on a fresh run of a broker that makes a run's lock lazily, under a
    PCT schedule of depth 3: the loop is lowered at its first synchronisation point, inside
    the lock's making, and the producer at its second."""
    state.step(op=Subscribe(slot=0))
    state.step(op=Close(producer=0, slot=0))
    state.step(
        op=RunInterleaved(schedule=PctSchedule(order=(0, 1, 2, 3), changes=(0, 1), lines=False))
    )


def one_at_a_time(state: Replay) -> None:
    state.step(op=Subscribe(slot=0))
    state.step(op=Close(producer=0, slot=0))
    state.step(op=RunInterleaved(schedule=PreemptionSchedule()))


def busy_example(state: Replay) -> None:
    """Both producers, two subscribers, a close, an unsubscribe, preemptions at lines and at
    synchronisation points."""
    state.step(op=Subscribe(slot=0))
    state.step(op=Subscribe(slot=0))
    state.step(op=Emit(producer=0, slot=0, count=2))
    state.step(op=Emit(producer=1, slot=0, count=2))
    state.step(
        op=RunInterleaved(
            schedule=PreemptionSchedule(first=1, preemptions=((3, 1, False), (1, 0, True)))
        )
    )
    state.step(op=Unsubscribe(subscriber="s1"))
    state.step(op=Emit(producer=1, slot=0, count=1))
    state.step(op=Close(producer=0, slot=0))
    state.step(
        op=RunInterleaved(
            schedule=PreemptionSchedule(first=2, preemptions=((5, 0, False), (0, 1, True)))
        )
    )


def run_once(steps: Steps, spec: str, failure: str | None) -> tuple[list[Entry], list[str]]:
    """Replay ``steps`` against ``spec``; expect the invariant ``failure`` to break (or none);
    return the interleaving the runtime recorded and its thread names."""
    states: list[Replay] = []

    def recording(state: Replay) -> None:
        states.append(state)
        steps(state)

    if failure is None:
        replay_steps(recording, spec)
    else:
        with pytest.raises(ScheduleFailure, match=rf"^\[{failure}\]"):
            replay_steps(recording, spec)
    runtime = states[0].machine.harness.runtime  # type: ignore[attr-defined]
    return list(runtime.trace.entries), [thread.name for thread in runtime.threads]


def assert_same_interleaving(first: list[Entry], second: list[Entry]) -> None:
    for index, (a, b) in enumerate(zip(first, second, strict=False)):
        assert a == b, f"the interleavings part at entry {index}: {a} then {b}"
    assert len(first) == len(second)


def lines_in(entries: list[Entry], file_suffix: str) -> int:
    return sum(
        1
        for entry in entries
        if isinstance(entry, Step) and entry.position.filename.endswith(file_suffix)
    )


# -- exact replay ---------------------------------------------------------------------------------


def test_a_failing_example_replays_the_same_interleaving_step_by_step() -> None:
    first, names = run_once(check_then_act_race, CHECK_THEN_ACT, "no-hang-after-done")
    second, _ = run_once(check_then_act_race, CHECK_THEN_ACT, "no-hang-after-done")

    assert_same_interleaving(first, second)
    # The interleaving ran the broker's own lines, on the loop and on a producer.
    assert lines_in(first, "mutant_subscribe_check_then_act.py") > 10
    threads_in_broker = {
        names[entry.thread]
        for entry in first
        if isinstance(entry, Step)
        and entry.position.filename.endswith("mutant_subscribe_check_then_act.py")
    }
    assert threads_in_broker == {"loop", "producer-0"}


def test_a_failing_pct_example_replays_the_same_interleaving_step_by_step() -> None:
    first, _ = run_once(lock_made_twice_under_pct, LOCK_MADE_TWICE, "no-exception")
    second, _ = run_once(lock_made_twice_under_pct, LOCK_MADE_TWICE, "no-exception")

    assert_same_interleaving(first, second)
    assert lines_in(first, "mutant_run_lock_created_twice.py") > 10
    # The same operations, one thread at a time, do not fail.
    run_once(one_at_a_time, LOCK_MADE_TWICE, None)


def test_a_pct_step_prints_as_the_code_that_replays_it() -> None:
    op = RunInterleaved(schedule=PctSchedule(order=(1, 0, 2, 3), changes=(4, 0), lines=True))
    printed = repr(op)
    assert printed == (
        "RunInterleaved(schedule=PctSchedule(order=(1, 0, 2, 3), changes=(4, 0), lines=True))"
    )
    assert eval(printed, vars(stateful.regression)) == op


def test_a_passing_example_replays_the_same_interleaving_step_by_step() -> None:
    first, _ = run_once(busy_example, DEFAULT_IMPL, None)
    second, _ = run_once(busy_example, DEFAULT_IMPL, None)

    assert_same_interleaving(first, second)
    assert lines_in(first, "core.py") > 50
    received = [entry.text for entry in first if isinstance(entry, Mark) and " got " in entry.text]
    assert received, "no subscriber received anything: the example did not exercise the broker"


# -- nondeterminism -------------------------------------------------------------------------------


def step_at(thread: int, line: int, note: str = "") -> Step:
    return Step(thread, Position("/src/core.py", line, "emit", note))


def test_the_ledger_is_quiet_when_the_same_choices_give_the_same_execution() -> None:
    ledger = ReplayLedger()
    trace = [step_at(0, 10), Mark(0, "begin emit"), step_at(1, 11)]
    ledger.record(("impl", ("emit",)), "  emit", trace, ["p0", "p1"])
    ledger.record(("impl", ("emit",)), "  emit", list(trace), ["p0", "p1"])
    # A different example is another key, not a divergence.
    ledger.record(("impl", ("close",)), "  close", [step_at(1, 99)], ["p0", "p1"])

    assert ledger.last_divergence is None


def test_the_ledger_names_the_first_entry_where_two_runs_of_the_same_choices_differ() -> None:
    ledger = ReplayLedger()
    names = ["producer-0", "loop"]
    ledger.record(
        "key", "  emit(p0#1, r1)", [step_at(0, 10), step_at(0, 11), step_at(1, 12)], names
    )
    ledger.record(
        "key", "  emit(p0#1, r1)", [step_at(0, 10), step_at(1, 40), step_at(1, 12)], names
    )

    divergence = ledger.last_divergence
    assert divergence is not None
    assert divergence.index == 1
    assert divergence.before == "producer-0 at core.py:11 in emit"
    assert divergence.after == "loop at core.py:40 in emit"
    explanation = divergence.explain()
    assert "emit(p0#1, r1)" in explanation
    assert "first run:  producer-0 at core.py:11 in emit" in explanation


def test_the_ledger_reports_a_run_that_ended_early() -> None:
    ledger = ReplayLedger()
    ledger.record("key", "", [step_at(0, 10), step_at(0, 11)], ["p"])
    ledger.record("key", "", [step_at(0, 10)], ["p"])

    divergence = ledger.last_divergence
    assert divergence is not None
    assert (divergence.index, divergence.after) == (1, "(the interleaving ended)")


def run_steps(machine: type[RunBrokerMachine], steps: Steps) -> None:
    """What ``stateful.regression.replay`` does, for a machine class with extra traced modules."""
    state = Replay(machine())
    try:
        state.check_invariants()
        steps(state)
    finally:
        state.teardown()


def line_of(statement: str) -> int:
    """The line of ``ForgetsTheFirstClose.close`` that holds ``statement``."""
    lines, first = inspect.getsourcelines(targets.ForgetsTheFirstClose.close)
    return first + next(i for i, line in enumerate(lines) if statement in line)


def forgetful_close(state: Replay) -> None:
    state.step(op=Subscribe(slot=0))
    state.step(op=Close(producer=0, slot=0))
    state.step(op=RunInterleaved(schedule=PreemptionSchedule()))


def test_replaying_an_example_that_depends_on_uncontrolled_state_records_the_divergence() -> None:
    targets.forget_the_next_close()
    LEDGER.reset()
    machine = machine_for(FORGETFUL, trace_modules=FORGETFUL_TRACE_MODULES)

    with pytest.raises(ScheduleFailure, match=r"^\[no-hang-after-done\]"):
        run_steps(machine, forgetful_close)
    assert LEDGER.last_divergence is None
    run_steps(machine, forgetful_close)  # the close is no longer forgotten: it passes

    divergence = LEDGER.last_divergence
    assert divergence is not None
    assert divergence.steps == "  subscribe(s1, r1, last_event_id=None)\n  close(0, r1)"
    # The first run took the forgetful branch; the replay skipped it.
    assert divergence.before.endswith(f"scheduler_targets.py:{line_of('= True')} in close")
    assert divergence.after.endswith(
        f"scheduler_targets.py:{line_of('if self._forgets:')} in close"
    )


def test_the_divergence_names_the_thread_that_ran_there() -> None:
    targets.forget_the_next_close()
    LEDGER.reset()
    machine = machine_for(FORGETFUL, trace_modules=FORGETFUL_TRACE_MODULES)
    with pytest.raises(ScheduleFailure):
        run_steps(machine, forgetful_close)
    run_steps(machine, forgetful_close)

    divergence = LEDGER.last_divergence
    assert divergence is not None
    assert divergence.before.startswith("producer-0 at ")


def test_run_machine_reports_uncontrolled_state_as_nondeterminism_not_flaky() -> None:
    targets.forget_the_next_close()
    machine = machine_for(FORGETFUL, trace_modules=FORGETFUL_TRACE_MODULES)
    settings = Settings(
        max_examples=100,
        stateful_step_count=10,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )

    with pytest.raises(Nondeterminism) as failure:
        run_machine(machine, settings=settings)

    message = str(failure.value)
    assert message.startswith("[nondeterminism]")
    assert "diverged at entry" in message
    assert "scheduler_targets.py" in message
    assert isinstance(failure.value.__cause__, Flaky)
