"""Every primitive a broker can reach is controlled or named (``stateful.reach``).

Locks from a helper module's import, from ``from threading import Lock`` in a helper, and from a
dataclass ``default_factory`` are controlled while an example runs; a real lock left on the
broker is replaced right after it is built; one that cannot be replaced fails the example before
any schedule runs, naming where it is, where it came from and the option that fixes it; and a
thread blocked on a real lock made later trips a watchdog that names that lock.
"""

from __future__ import annotations

import _thread
from collections.abc import Iterator

import pytest

from stateful import config, primitives
from stateful.errors import UncontrolledPrimitive, WatchdogTimeout
from stateful.machine import RunBrokerMachine, machine_for
from stateful.primitives import controlled
from stateful.reach import helper_modules
from stateful.regression import Emit, PreemptionSchedule, Replay, RunInterleaved, replay_steps
from tests import discovery_targets, reach_deep, reach_helpers, reach_targets
from tests.test_map_discovery import subscribe_then_leave

TARGETS = "tests.reach_targets"
REAL_LOCK_TYPE = type(_thread.allocate_lock())


def built(name: str, trace_modules: tuple[str, ...] = ()) -> Iterator[RunBrokerMachine]:
    machine = machine_for(f"{TARGETS}:{name}", trace_modules=trace_modules)()
    try:
        yield machine
    finally:
        machine.teardown()


def test_the_helper_modules_are_those_the_broker_module_names() -> None:
    assert set(helper_modules([reach_targets])) == {reach_helpers, discovery_targets}


def test_a_helpers_import_time_lock_and_from_import_and_dataclass_are_controlled() -> None:
    real = reach_helpers.LOCK
    with controlled([reach_targets], helper_modules([reach_targets])):
        assert type(reach_helpers.LOCK) is primitives.Lock
        assert type(reach_helpers.make_lock()) is primitives.Lock
        assert type(reach_helpers.Guarded().lock) is primitives.Lock
    assert reach_helpers.LOCK is real
    assert type(reach_helpers.make_lock()) is REAL_LOCK_TYPE
    assert type(reach_helpers.Guarded().lock) is REAL_LOCK_TYPE


def test_a_dataclass_in_a_traced_module_gets_a_controlled_lock() -> None:
    with controlled([reach_deep]):
        assert type(reach_deep.RunState().lock) is primitives.Lock
    assert type(reach_deep.RunState().lock) is REAL_LOCK_TYPE


@pytest.mark.parametrize(
    "name", ["HelperLockBroker", "FromImportLockBroker", "DataclassLockBroker", "DeepLockBroker"]
)
def test_the_brokers_lock_is_controlled_and_it_runs(name: str) -> None:
    for machine in built(name):
        assert type(machine.broker._lock) is primitives.Lock
    replay_steps(subscribe_then_leave, f"{TARGETS}:{name}")


def test_a_real_lock_put_back_after_the_example() -> None:
    for machine in built("DeepLockBroker"):
        broker = machine.broker
    assert broker._lock is reach_deep.LOCK


def test_a_lock_that_cannot_be_replaced_fails_before_any_schedule_naming_the_fix() -> None:
    with pytest.raises(UncontrolledPrimitive, match=r"^\[uncontrolled-primitive\]") as failure:
        machine_for(f"{TARGETS}:TupleLockBroker")()
    message = str(failure.value)
    assert "broker._guards[…]: a real threading.Lock" in message
    assert "module tests.reach_deep's global LOCK, made when it was imported" in message
    assert "fix: --trace-module=tests.reach_deep" in message
    # The patches were put back although the machine was never built.
    assert type(reach_helpers.LOCK) is REAL_LOCK_TYPE

    for machine in built("TupleLockBroker", trace_modules=("tests.reach_deep",)):
        assert type(machine.broker._guards[0]) is primitives.Lock


def test_a_thread_blocked_on_a_real_lock_made_later_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(config.settings, "watchdog_seconds", 1.0)

    def steps(state: Replay) -> None:
        state.step(op=Emit(producer=0, slot=0, count=1))
        state.step(op=Emit(producer=1, slot=0, count=1))
        state.step(op=RunInterleaved(schedule=PreemptionSchedule(first=0, preemptions=())))

    with pytest.raises(WatchdogTimeout, match=r"^\[watchdog\]") as failure:
        replay_steps(steps, f"{TARGETS}:LazyRunStateBroker")
    message = str(failure.value)
    assert "broker._states['r1'].lock: a real threading.Lock, held, made by the dataclass " in (
        message
    )
    assert "field RunState.lock (default_factory=" in message
    assert "fix: --trace-module=tests.reach_deep" in message

    # Traced as the message says, the lock is controlled: the blocked producer parks, the
    # holder goes on, and the example passes.
    monkeypatch.setattr(config.settings, "trace_modules", ("tests.reach_deep",))
    replay_steps(steps, f"{TARGETS}:LazyRunStateBroker")
