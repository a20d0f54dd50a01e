"""Code for the scheduler's tests to run under the deterministic scheduler.

The scheduler tests trace this module (every line is a switch point) and put it under
``stateful.primitives.controlled``. Its functions are the smallest shapes of code the scheduler
must handle: an unlocked read-modify-write, critical sections on each kind of primitive, an
``import threading`` inside a function, ``time.sleep``, and a broker whose behaviour depends on
state the scheduler does not control.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from broker import RunBroker

# Primitives that exist before any example starts; ``controlled`` must replace them too.
MODULE_LOCK = threading.Lock()


MODULE_CONDITION = threading.Condition(MODULE_LOCK)


class Holder:
    class_lock = threading.RLock()
    class_condition = threading.Condition(class_lock)


def notify_under_module_lock() -> None:
    with MODULE_LOCK:
        MODULE_CONDITION.notify_all()


class Counter:
    """Shared state that two threads update."""

    def __init__(self) -> None:
        self.value = 0
        self.log: list[str] = []

    def unlocked_increment(self) -> None:
        value = self.value
        self.value = value + 1

    def locked_increment(self, lock: Any) -> None:
        with lock:
            value = self.value
            self.value = value + 1


def acquire(lock: Any) -> None:
    lock.acquire()


def release(lock: Any) -> None:
    lock.release()


def critical_section(lock: Any, log: list[str], name: str) -> None:
    with lock:
        log.append(f"{name} in")
        log.append(f"{name} out")


def take_both(first: Any, second: Any) -> None:
    with first, second:
        pass


def wait_for_flag(condition: Any, flags: dict[str, bool], log: list[str]) -> None:
    with condition:
        while not flags.get("ready"):
            condition.wait()
        log.append("waiter woke")


def raise_flag(condition: Any, flags: dict[str, bool], log: list[str]) -> None:
    with condition:
        flags["ready"] = True
        log.append("flag raised")
        condition.notify_all()


def wait_event(event: Any, log: list[str]) -> None:
    event.wait()
    log.append("event seen")


def set_event(event: Any, log: list[str]) -> None:
    log.append("event set")
    event.set()


def acquire_semaphore(semaphore: Any, log: list[str]) -> None:
    semaphore.acquire()
    log.append("semaphore acquired")


def release_semaphore(semaphore: Any, log: list[str]) -> None:
    log.append("semaphore released")
    semaphore.release()


class LazyLocks:
    """A lock per key, made on first use without a lock around the making: two threads that
    both find no lock for a key each make and store one, and the one stored first no longer
    excludes the other. A race of depth 3: the second thread's lookup must come before the
    first one's store, and its critical section must open and close inside the first's."""

    def __init__(self) -> None:
        self.locks: dict[str, Any] = {}
        self.log: list[str] = []

    def lock_for(self, key: str) -> Any:
        lock = self.locks.get(key)
        if lock is None:
            lock = threading.Lock()
            self.locks[key] = lock
        return lock

    def critical_section(self, key: str, name: str) -> None:
        with self.lock_for(key):
            self.log.append(f"{name} in")
            self.log.append(f"{name} out")

    def overlapped(self) -> bool:
        """Whether a critical section opened while another was open."""
        pairs = zip(self.log, self.log[1:], strict=False)
        return any(a.endswith(" in") and b.endswith(" in") for a, b in pairs)


def lock_made_lazily() -> Any:
    import threading

    return threading.Lock()


def primitives_made_lazily() -> dict[str, Any]:
    from threading import Condition, Event, Lock, RLock, Semaphore

    return {
        "Lock": Lock(),
        "RLock": RLock(),
        "Condition": Condition(),
        "Event": Event(),
        "Semaphore": Semaphore(),
    }


def call(helper: Callable[[], Any]) -> Any:
    """Run an untraced ``helper`` on behalf of this module."""
    return helper()


def make_queue() -> queue.Queue[int]:
    return queue.Queue()


def make_thread() -> threading.Thread:
    return threading.Thread(target=lambda: None)


def nap(seconds: float, log: list[str], name: str) -> None:
    time.sleep(seconds)
    log.append(name)


def fail(message: str) -> None:
    raise ValueError(message)


_a_broker_forgets = False


class ForgetsTheFirstClose(RunBroker):
    """A correct broker, except that the first instance in the process to be closed ignores
    every ``close``: whether an example fails depends on what ran before it, which the
    scheduler does not control, so a failure found once does not fail again when replayed."""

    _forgets = False

    def close(self, run_id: Hashable) -> None:
        global _a_broker_forgets
        if not _a_broker_forgets:
            _a_broker_forgets = True
            self._forgets = True
        if self._forgets:
            return
        super().close(run_id)


def forget_the_next_close() -> None:
    """Make the next broker to be closed the forgetful one."""
    global _a_broker_forgets
    _a_broker_forgets = False


def post(loop: Any, log: list[str], name: str) -> None:
    loop.call_soon_threadsafe(log.append, name)


# -- threads of the code under test, and the clock -----------------------------------------------


def start_thread(target: Callable[..., Any], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def start_and_join(target: Callable[..., Any], log: list[str]) -> None:
    thread = start_thread(target, log)
    log.append(f"started, alive={thread.is_alive()}")
    thread.join()
    log.append(f"joined, alive={thread.is_alive()}")


def nap_and_log(log: list[str]) -> None:
    time.sleep(2.0)
    log.append("thread ran")


def spin(flags: dict[str, bool]) -> None:
    while not flags.get("stop"):
        pass


def spin_on_one_line(flags: dict[str, bool]) -> None:
    while not flags.get("stop"): pass  # fmt: skip  # noqa: E701 (a spin-wait as often written)


def start_timer(seconds: float, log: list[str], cancel: bool) -> threading.Timer:
    timer = threading.Timer(seconds, lambda: log.append(f"fired at {time.monotonic()}"))
    if cancel:
        timer.cancel()
    timer.start()
    return timer


def make_simple_queue() -> queue.SimpleQueue[Any]:
    return queue.SimpleQueue()


def make_queues() -> dict[str, queue.Queue[Any]]:
    return {
        "Queue": queue.Queue(),
        "LifoQueue": queue.LifoQueue(),
        "PriorityQueue": queue.PriorityQueue(),
    }


def take(work: Any, log: list[str], timeout: float | None = None) -> None:
    try:
        log.append(f"took {work.get(timeout=timeout)}")
    except queue.Empty:
        log.append(f"empty at {time.monotonic()}")


def put_all(work: Any, log: list[str], items: list[Any]) -> None:
    for item in items:
        log.append(f"put {item}")
        work.put(item)


def clocks() -> dict[str, float]:
    return {
        "monotonic": time.monotonic(),
        "perf_counter": time.perf_counter(),
        "time": time.time(),
        "monotonic_ns": time.monotonic_ns(),
        "time_ns": time.time_ns(),
    }


def nap_then_read_clocks(seconds: float, readings: list[dict[str, float]]) -> None:
    time.sleep(seconds)
    readings.append(clocks())


async def run_off_the_loop(how: str, fn: Callable[[], Any]) -> Any:
    import asyncio

    if how == "to_thread":
        return await asyncio.to_thread(fn)
    return await asyncio.get_running_loop().run_in_executor(None, fn)
