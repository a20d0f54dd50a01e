"""Controlled primitives: the code under test gets cooperative locks, conditions, events and
semaphores however it reaches ``threading``; a thread that would block parks; all threads
blocked is a deadlock; a thread blocked outside the scheduler's control trips the watchdog;
everything is put back afterwards.
"""

from __future__ import annotations

import _thread
import functools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stateful import clock, primitives
from stateful.errors import Deadlock, WatchdogTimeout
from stateful.primitives import controlled
from stateful.runtime import Runtime, running
from stateful.strategy import PreemptionSchedule, RunToCompletion
from stateful.trace import Step
from tests import scheduler_targets as targets

WATCHDOG_SECONDS = 1.0
REAL_LOCK_TYPE = type(_thread.allocate_lock())


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    rt = Runtime([targets.__file__], watchdog_seconds=WATCHDOG_SECONDS)
    with controlled([targets]), running(rt):
        yield rt


def run_pair(
    rt: Runtime,
    first: Callable[[], None],
    second: Callable[[], None],
    strategy: Any = None,
) -> None:
    rt.worker("a").submit(first, "op on a")
    rt.worker("b").submit(second, "op on b")
    rt.run(strategy if strategy is not None else RunToCompletion())


def body_line(function: Callable[..., Any], offset: int) -> int:
    return int(function.__code__.co_firstlineno) + offset


# -- a thread that would block parks and another runs ---------------------------------------------


def test_a_thread_blocked_on_a_lock_parks_while_the_holder_finishes(runtime: Runtime) -> None:
    lock = targets.lock_made_lazily()
    log: list[str] = []
    # Counted in lines: a is switched out between "a in" and "a out"; b then parks on the lock,
    # so a, the only runnable thread, finishes before b gets in.
    run_pair(
        runtime,
        functools.partial(targets.critical_section, lock, log, "a"),
        functools.partial(targets.critical_section, lock, log, "b"),
        PreemptionSchedule(first=0, preemptions=((4, 0, False),)).start(),
    )

    assert log == ["a in", "a out", "b in", "b out"]
    with_line = body_line(targets.critical_section, 1)
    resumed = [
        (
            runtime.threads[e.thread].name,
            e.position.lineno - with_line,
            e.position.note.split(" ")[0],
        )
        for e in runtime.trace.entries
        if isinstance(e, Step) and e.position.function == "critical_section"
    ]
    assert resumed == [
        ("a", 0, ""),
        ("a", 0, "acquire"),
        ("a", 1, ""),
        ("b", 0, ""),  # b runs the with statement and parks in acquire: a holds the lock
        ("a", 2, ""),
        ("a", 0, ""),
        ("a", 0, "release"),
        ("b", 0, "acquire"),
        ("b", 1, ""),
        ("b", 2, ""),
        ("b", 0, ""),
        ("b", 0, "release"),
    ]


def test_a_condition_waiter_parks_until_notified(runtime: Runtime) -> None:
    condition = targets.primitives_made_lazily()["Condition"]
    flags: dict[str, bool] = {}
    log: list[str] = []
    run_pair(
        runtime,
        functools.partial(targets.wait_for_flag, condition, flags, log),
        functools.partial(targets.raise_flag, condition, flags, log),
    )

    assert log == ["flag raised", "waiter woke"]


def test_an_event_waiter_parks_until_set(runtime: Runtime) -> None:
    event = targets.primitives_made_lazily()["Event"]
    log: list[str] = []
    run_pair(
        runtime,
        functools.partial(targets.wait_event, event, log),
        functools.partial(targets.set_event, event, log),
    )

    assert log == ["event set", "event seen"]


def test_a_semaphore_waiter_parks_until_released(runtime: Runtime) -> None:
    semaphore = targets.call(lambda: threading.Semaphore(0))
    log: list[str] = []
    run_pair(
        runtime,
        functools.partial(targets.acquire_semaphore, semaphore, log),
        functools.partial(targets.release_semaphore, semaphore, log),
    )

    assert log == ["semaphore released", "semaphore acquired"]


# -- failures that would otherwise hang -----------------------------------------------------------


def test_all_threads_blocked_is_a_deadlock_naming_each_threads_position(runtime: Runtime) -> None:
    first = targets.lock_made_lazily()
    second = targets.lock_made_lazily()
    inner = body_line(targets.take_both, 1)
    with pytest.raises(Deadlock) as failure:
        # Counted in synchronisation points: a holds its first lock when b starts.
        run_pair(
            runtime,
            functools.partial(targets.take_both, first, second),
            functools.partial(targets.take_both, second, first),
            PreemptionSchedule(first=0, preemptions=((1, 0, True),)).start(),
        )

    message = str(failure.value)
    assert message.startswith("[deadlock]")
    for name in ("a", "b"):
        assert f"  {name}: scheduler_targets.py:{inner} in take_both (acquire Lock@" in message
    assert runtime.aborted


def test_a_wait_nobody_ends_is_a_deadlock(runtime: Runtime) -> None:
    event = targets.primitives_made_lazily()["Event"]
    runtime.worker("waiter").submit(functools.partial(targets.wait_event, event, []), "wait")
    with pytest.raises(Deadlock, match=r"waiter: scheduler_targets\.py:\d+ in wait_event"):
        runtime.run(RunToCompletion())


def test_a_thread_blocked_on_a_real_lock_trips_the_watchdog(runtime: Runtime) -> None:
    real = threading.Lock()  # made by the test itself: a real lock
    assert type(real) is REAL_LOCK_TYPE
    real.acquire()
    runtime.worker("blocker").submit(functools.partial(targets.acquire, real), "acquire real")
    try:
        with pytest.raises(WatchdogTimeout) as failure:
            runtime.run(RunToCompletion())
    finally:
        real.release()  # lets the parked thread unwind

    message = str(failure.value)
    line = body_line(targets.acquire, 1)
    assert f"thread blocker did not reach its next switch point within {WATCHDOG_SECONDS:g}s" in (
        message
    )
    assert f"its last switch point was scheduler_targets.py:{line} in acquire" in message


# -- which primitives are controlled --------------------------------------------------------------


def test_import_threading_inside_a_traced_function_gets_controlled_primitives() -> None:
    with controlled([targets]):
        lock = targets.lock_made_lazily()
        made = targets.primitives_made_lazily()

    assert type(lock) is primitives.Lock
    assert {name: type(value) for name, value in made.items()} == {
        "Lock": primitives.Lock,
        "RLock": primitives.RLock,
        "Condition": primitives.Condition,
        "Event": primitives.Event,
        "Semaphore": primitives.Semaphore,
    }


def test_a_lock_made_by_untraced_code_on_behalf_of_traced_code_is_controlled() -> None:
    with controlled([targets]):
        helper_lock = targets.call(threading.Lock)
        work_queue = targets.make_queue()

    assert type(helper_lock) is primitives.Lock
    assert type(work_queue.mutex) is primitives.Lock
    assert type(work_queue.not_empty) is primitives.Condition


def test_primitives_made_with_no_traced_frame_on_the_stack_stay_real() -> None:
    with controlled([targets]):
        own_lock = threading.Lock()
        own_queue: queue.Queue[int] = queue.Queue()
        thread = targets.make_thread()

    assert type(own_lock) is REAL_LOCK_TYPE
    assert type(own_queue.mutex) is REAL_LOCK_TYPE
    # A Thread's own Event is made by threading's internals, even when traced code makes it.
    assert type(thread._started) is primitives._REAL_EVENT  # type: ignore[attr-defined]


def test_module_level_and_class_level_primitives_are_replaced_for_the_block() -> None:
    module_lock = targets.MODULE_LOCK
    class_lock = targets.Holder.class_lock
    with controlled([targets]):
        assert type(targets.MODULE_LOCK) is primitives.Lock
        assert type(targets.Holder.class_lock) is primitives.RLock
        assert targets.time.sleep is clock.sleep

    assert targets.MODULE_LOCK is module_lock
    assert targets.Holder.class_lock is class_lock


def test_a_module_level_condition_keeps_sharing_its_lock_when_replaced() -> None:
    with controlled([targets]):
        assert targets.MODULE_CONDITION._lock is targets.MODULE_LOCK
        assert targets.Holder.class_condition._lock is targets.Holder.class_lock
        targets.notify_under_module_lock()


def test_everything_is_restored_after_the_block() -> None:
    originals = {
        name: getattr(threading, name)
        for name in ("Lock", "RLock", "Condition", "Event", "Semaphore", "BoundedSemaphore")
    }
    allocate_lock = _thread.allocate_lock
    with controlled([targets]):
        assert threading.Lock is not originals["Lock"]
        assert targets.threading is not threading
    assert {name: getattr(threading, name) for name in originals} == originals
    assert _thread.allocate_lock is allocate_lock
    assert targets.threading is threading
    assert targets.time is time
    assert type(targets.lock_made_lazily()) is REAL_LOCK_TYPE


def test_everything_is_restored_when_the_block_fails() -> None:
    lock_type = threading.Lock
    with pytest.raises(ValueError, match="inside the block"), controlled([targets]):
        raise ValueError("inside the block")
    assert threading.Lock is lock_type
    assert targets.threading is threading
