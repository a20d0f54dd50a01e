"""Threads the code under test starts are managed threads; ``queue.SimpleQueue`` and the queues of
``queue`` are controlled; the clock the code under test reads is virtual inside managed threads.

Each test starts threads from ``tests.scheduler_targets`` (traced, under controlled primitives)
or from the brokers of ``tests.thread_brokers``, and checks that the scheduler runs them: their
lines are switch points of a thread of their own in the trace, blocking parks, time is virtual.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stateful import clock
from stateful.errors import Deadlock, Livelock
from stateful.loop import ControlledLoop
from stateful.primitives import controlled
from stateful.runtime import Runtime, running
from stateful.strategy import RunToCompletion
from stateful.trace import Step
from tests import scheduler_targets as targets
from tests import thread_brokers

# Small, so that a thread left to block for real fails the test quickly instead of hanging.
WATCHDOG_SECONDS = 2.0


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    rt = Runtime([targets.__file__], watchdog_seconds=WATCHDOG_SECONDS)
    with controlled([targets]), running(rt):
        yield rt


def stop(runtime: Runtime, loop: ControlledLoop) -> None:
    if not runtime.aborted:
        loop.stop_and_wait()
        runtime.run(RunToCompletion())
    loop.close()


@pytest.fixture
def loop(runtime: Runtime) -> Iterator[ControlledLoop]:
    controlled_loop = ControlledLoop(runtime)
    yield controlled_loop
    stop(runtime, controlled_loop)


def threads_of_code(rt: Runtime) -> list[str]:
    return [thread.name for thread in rt.threads if thread.of_code]


def functions_run_on(rt: Runtime, thread_name: str) -> set[str]:
    """The functions of traced files that ``thread_name`` was resumed in."""
    return {
        entry.position.function
        for entry in rt.trace.entries
        if isinstance(entry, Step)
        and rt.threads[entry.thread].name == thread_name
        and entry.position.filename
    }


def run_op(rt: Runtime, name: str, fn: Any) -> None:
    rt.worker(name).submit(fn, f"op on {name}")


# -- brokers that own threads ---------------------------------------------------------------------


def drive_broker(cls: type[Any]) -> tuple[Runtime, list[Any]]:
    """Subscribe to r1, emit three events and close r1 from one producer; what the subscriber
    read, and the runtime (shut down)."""
    rt = Runtime([thread_brokers.__file__], watchdog_seconds=WATCHDOG_SECONDS)
    received: list[Any] = []
    with controlled([thread_brokers]), running(rt):
        loop = ControlledLoop(rt)
        broker = cls()  # on the controller, as the machine builds it
        broker.bind_loop(loop)

        async def read() -> None:
            queue = broker.subscribe("r1")
            while True:
                received.append(await queue.get())
                if received[-1]["type"] == "done":
                    return

        loop.submit(read())
        rt.run(RunToCompletion())
        producer = rt.worker("producer")
        for n in range(3):
            producer.submit(functools.partial(broker.emit, "r1", {"type": "event", "n": n}), "emit")
        producer.submit(functools.partial(broker.close, "r1"), "close")
        rt.run(RunToCompletion())
        stop(rt, loop)
    return rt, received


def test_a_dispatcher_thread_started_in_init_is_scheduled_and_traced() -> None:
    rt, received = drive_broker(thread_brokers.DispatcherBroker)

    assert received == [{"type": "event", "n": n} for n in range(3)] + [{"type": "done"}]
    assert threads_of_code(rt) == ["thread-1 (DispatcherBroker._dispatch)"]
    assert {"_dispatch", "_deliver"} <= functions_run_on(rt, threads_of_code(rt)[0])


def test_an_executor_bridge_delivers_on_a_scheduled_worker_thread() -> None:
    rt, received = drive_broker(thread_brokers.ExecutorBroker)

    assert received == [{"type": "event", "n": n} for n in range(3)] + [{"type": "done"}]
    # One worker, started by the first submit, on the producer's thread.
    assert threads_of_code(rt) == ["thread-1 (_worker)"]
    assert "_deliver" in functions_run_on(rt, "thread-1 (_worker)")


@pytest.mark.parametrize("how", ["to_thread", "run_in_executor"])
def test_work_handed_off_the_loop_runs_on_a_scheduled_thread_in_virtual_time(
    runtime: Runtime, loop: ControlledLoop, how: str
) -> None:
    readings: list[dict[str, float]] = []
    job = loop.submit(
        targets.run_off_the_loop(
            how, functools.partial(targets.nap_then_read_clocks, 3.0, readings)
        )
    )
    runtime.run(RunToCompletion())

    assert job.done() and job.exception() is None
    assert threads_of_code(runtime) == ["thread-1 (_worker)"]
    assert "nap_then_read_clocks" in functions_run_on(runtime, "thread-1 (_worker)")
    assert readings[0]["monotonic"] == clock.MONOTONIC_BASE + 3.0
    assert runtime.clock.now == 3.0


# -- Thread, Timer, join ---------------------------------------------------------------------------


def test_join_from_a_managed_thread_waits_under_the_scheduler(runtime: Runtime) -> None:
    log: list[str] = []
    run_op(runtime, "starter", functools.partial(targets.start_and_join, targets.nap_and_log, log))
    runtime.run(RunToCompletion())

    # A real join would wait for the thread's 2 s sleep, which is virtual and needs the scheduler.
    assert log == ["started, alive=True", "thread ran", "joined, alive=False"]
    assert threads_of_code(runtime) == ["thread-1 (nap_and_log)"]
    assert runtime.clock.now == 2.0


def test_a_thread_started_on_the_controller_by_traced_code_is_managed(runtime: Runtime) -> None:
    log: list[str] = []
    thread = targets.start_thread(targets.nap_and_log, log)

    assert threads_of_code(runtime) == ["thread-1 (nap_and_log)"]
    assert thread.is_alive() and log == []  # parked until the scheduler runs it
    assert thread.ident is not None and thread.daemon
    thread.join(timeout=1.0)  # returns: the thread cannot run meanwhile
    # A join without a timeout from a thread the scheduler does not run would wait for ever: it
    # raises. Tried from a real thread of its own, so that a join that does wait ends the test.
    refused: list[str] = []

    def join_without_timeout() -> None:
        try:
            thread.join()
        except RuntimeError as error:
            refused.append(str(error))

    joiner = threading.Thread(target=join_without_timeout, daemon=True)
    joiner.start()
    joiner.join(timeout=WATCHDOG_SECONDS)
    assert len(refused) == 1 and "which only the scheduler runs" in refused[0]
    runtime.run(RunToCompletion())
    assert log == ["thread ran"]
    assert not thread.is_alive()
    thread.join()


def test_a_thread_started_with_no_traced_frame_on_the_stack_stays_real(runtime: Runtime) -> None:
    done = threading.Event()
    thread = threading.Thread(target=done.set)
    thread.start()
    thread.join()

    assert done.is_set()
    assert runtime.threads == []


@pytest.mark.parametrize("cancel", [False, True])
def test_a_timer_fires_after_its_interval_in_virtual_time(runtime: Runtime, cancel: bool) -> None:
    log: list[str] = []
    # 5 s: a real wait would trip the 2 s watchdog.
    run_op(runtime, "arm", functools.partial(targets.start_timer, 5.0, log, cancel))
    runtime.run(RunToCompletion())

    assert threads_of_code(runtime) == ["thread-1 (start_timer.<locals>.<lambda>)"]
    assert log == ([] if cancel else [f"fired at {clock.MONOTONIC_BASE + 5.0}"])
    assert runtime.clock.now == (0.0 if cancel else 5.0)


# -- what a thread of the code under test can do wrong ---------------------------------------------


@pytest.mark.parametrize("spin", [targets.spin, targets.spin_on_one_line])
def test_a_spinning_thread_is_named_in_the_livelock(
    spin: Callable[[dict[str, bool]], None],
) -> None:
    # On one line too: every turn back to the line is a switch point, as sys.settrace reports
    # it (sys.monitoring's LINE events would not), so the spin ends in a livelock, not a hang.
    rt = Runtime([targets.__file__], watchdog_seconds=WATCHDOG_SECONDS, max_steps=300)
    flags: dict[str, bool] = {}
    with controlled([targets]), running(rt):
        run_op(rt, "starter", functools.partial(targets.start_thread, spin, flags))
        with pytest.raises(Livelock) as failure:
            rt.run(RunToCompletion())
        flags["stop"] = True  # lets the thread unwind

    line = spin.__code__.co_firstlineno
    name = spin.__name__
    message = str(failure.value)
    assert f"thread thread-1 ({name}), started by the code under test, is still runnable" in message
    assert f"at scheduler_targets.py:{line + 1} in {name}" in message or (
        f"at scheduler_targets.py:{line + 2} in {name}" in message
    )


def test_an_exception_escaping_a_thread_is_a_crash_of_that_thread(runtime: Runtime) -> None:
    run_op(runtime, "starter", functools.partial(targets.start_thread, targets.fail, "boom"))
    runtime.run(RunToCompletion())

    assert [(c.thread, c.where) for c in runtime.crashes] == [("thread-1 (fail)", "its run()")]
    assert "ValueError: boom" in runtime.crashes[0].text


def test_a_thread_waiting_for_work_at_settle_is_idle_but_one_on_a_lock_is_deadlocked(
    runtime: Runtime,
) -> None:
    work = targets.make_simple_queue()
    targets.start_thread(targets.take, work, [])
    runtime.run(RunToCompletion())  # settles: the thread waits for an item

    assert "(waiting for SimpleQueue@" in runtime.where()
    lock = targets.lock_made_lazily()
    run_op(runtime, "holder", functools.partial(targets.acquire, lock))
    runtime.run(RunToCompletion())
    targets.start_thread(targets.acquire, lock)
    with pytest.raises(
        Deadlock, match=r"thread-2 \(acquire\): scheduler_targets\.py:\d+ in acquire"
    ):
        runtime.run(RunToCompletion())


def test_an_idle_executor_worker_is_unwound_at_shutdown_without_a_log_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rt = Runtime([targets.__file__], watchdog_seconds=WATCHDOG_SECONDS)
    caplog.set_level(logging.DEBUG, logger="concurrent.futures")
    with controlled([targets]), running(rt):
        loop = ControlledLoop(rt)
        loop.submit(targets.run_off_the_loop("to_thread", lambda: None))
        rt.run(RunToCompletion())
        worker = rt.threads[-1].thread
        assert worker is not None and worker.is_alive()
    loop.close()

    assert not worker.is_alive()
    assert caplog.records == []


# -- queues ---------------------------------------------------------------------------------------


def test_a_simple_queue_get_parks_until_an_item_is_put(runtime: Runtime) -> None:
    work = targets.make_simple_queue()
    log: list[str] = []
    run_op(runtime, "taker", functools.partial(targets.take, work, log))
    run_op(runtime, "giver", functools.partial(targets.put_all, work, log, [1, 2]))
    runtime.run(RunToCompletion())

    assert log == ["put 1", "put 2", "took 1"]
    assert (work.qsize(), work.empty(), work.get_nowait(), work.empty()) == (1, False, 2, True)
    with pytest.raises(queue.Empty):
        work.get_nowait()
    with pytest.raises(RuntimeError, match="would block a thread the scheduler does not run"):
        work.get()


def test_a_simple_queue_get_times_out_in_virtual_time(runtime: Runtime) -> None:
    log: list[str] = []
    run_op(runtime, "taker", functools.partial(targets.take, targets.make_simple_queue(), log, 4.0))
    runtime.run(RunToCompletion())

    assert log == [f"empty at {clock.MONOTONIC_BASE + 4.0}"]


@pytest.mark.parametrize(
    ("kind", "first"), [("Queue", "took a"), ("LifoQueue", "took b"), ("PriorityQueue", "took a")]
)
def test_the_queues_of_queue_made_by_traced_code_are_controlled(
    runtime: Runtime, kind: str, first: str
) -> None:
    work = targets.make_queues()[kind]
    log: list[str] = []
    # The taker parks on the empty queue; the giver puts three items; the taker gets one.
    run_op(runtime, "taker", functools.partial(targets.take, work, log))
    run_op(runtime, "giver", functools.partial(targets.put_all, work, log, ["a", "c", "b"]))
    runtime.run(RunToCompletion())
    assert log == ["put a", "put c", "put b", first]

    # A timed get on an emptied queue raises Empty at the virtual deadline (queue's own clock).
    while not work.empty():
        work.get_nowait()
    timed: list[str] = []
    run_op(runtime, "timed", functools.partial(targets.take, work, timed, 2.5))
    runtime.run(RunToCompletion())
    assert timed == [f"empty at {clock.MONOTONIC_BASE + 2.5}"]


# -- the clock ------------------------------------------------------------------------------------


def test_clocks_are_virtual_in_managed_threads_and_real_elsewhere(runtime: Runtime) -> None:
    readings: list[dict[str, float]] = []
    run_op(runtime, "reader", functools.partial(targets.nap_then_read_clocks, 1.5, readings))
    # Read from this (untraced) module, on a managed thread: virtual too.
    untraced: list[float] = []
    run_op(runtime, "untraced", lambda: untraced.append(time.monotonic()))
    runtime.run(RunToCompletion())

    assert readings == [
        {
            "monotonic": clock.MONOTONIC_BASE + 1.5,
            "perf_counter": clock.MONOTONIC_BASE + 1.5,
            "time": clock.WALL_BASE + 1.5,
            "monotonic_ns": int(clock.MONOTONIC_BASE + 1.5) * 10**9 + 5 * 10**8,
            "time_ns": int(clock.WALL_BASE + 1) * 10**9 + 5 * 10**8,
        }
    ]
    assert untraced == [clock.MONOTONIC_BASE]
    # The controller reads the real clocks, even from traced code.
    before = clock._real_monotonic()
    outside = targets.clocks()
    assert before <= outside["monotonic"] <= clock._real_monotonic()
    assert abs(outside["time"] - clock._real_time()) < 60.0
