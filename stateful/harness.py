"""Where the state machine's operations run: producer threads and an asyncio loop thread.

Two harnesses give the machine the same small interface:

``ControlledHarness``
    the deterministic mode: real threads run one at a time under ``stateful.runtime``, the loop
    is a ``ControlledLoop``, and the modules under test get controlled primitives, and so do
    the helper modules they use and the broker once it is built (``adopt``, ``stateful.reach``).
    ``settle`` runs every pending operation interleaved as a strategy chooses, until nothing
    can run.
``FreeHarness``
    the stress mode: the same threads run free, with a tiny ``sys.setswitchinterval``, for races
    the controlled mode cannot see (inside C code, or in modules that are not traced). Not
    deterministic, so never part of the default gate.

The machine submits operations from the test's own thread; they run on the harness's threads.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from typing import Protocol

from stateful.errors import UncontrolledPrimitive
from stateful.impl import BrokerImpl
from stateful.loop import ControlledLoop
from stateful.primitives import controlled
from stateful.reach import adopt, describe_all, helper_modules, uncontrolled
from stateful.runtime import Crash, Runtime
from stateful.strategy import RunToCompletion, SchedulingStrategy
from stateful.trace import Trace

Op = Callable[[], None]


class Harness(Protocol):
    crashes: list[Crash]

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def tick(self) -> int: ...
    def on_producer(self, index: int, op: Op, label: str) -> None: ...
    def on_loop(self, op: Op) -> None: ...
    def on_loop_now(self, op: Op) -> None: ...
    def settle(self, strategy: SchedulingStrategy, label: str) -> None: ...
    def mark_loop(self, text: str) -> None: ...
    def close(self) -> None: ...


class ControlledHarness:
    """Deterministic: see the module docstring."""

    def __init__(
        self,
        impl: BrokerImpl,
        producers: int,
        *,
        watchdog_seconds: float,
        max_steps: int,
    ) -> None:
        self._exit = ExitStack()
        self._impl = impl
        self._replacements = self._exit.enter_context(
            controlled(impl.modules, helper_modules(impl.modules))
        )
        self.runtime = Runtime(impl.files, watchdog_seconds=watchdog_seconds, max_steps=max_steps)
        self._exit.callback(self.runtime.shutdown)
        self.loop = ControlledLoop(self.runtime)
        self._producers = [self.runtime.worker(f"producer-{i}") for i in range(producers)]
        self.crashes = self.runtime.crashes

    @property
    def trace(self) -> Trace:
        return self.runtime.trace

    def tick(self) -> int:
        return self.runtime.tick()

    def adopt(self, broker: object) -> None:
        """Replace the real primitives the new ``broker`` holds; raise ``UncontrolledPrimitive``
        naming those that cannot be, before any schedule runs. A watchdog failure later names
        the real ones it holds then (``stateful.reach``)."""
        for restore in adopt(broker, self._replacements):
            self._exit.callback(restore)
        traced = [module.__name__ for module in self._impl.modules]
        reals = uncontrolled(broker, traced)
        if reals:
            raise UncontrolledPrimitive(
                f"the broker {self._impl.spec} holds real threading primitives the scheduler "
                f"cannot replace; a thread blocked on one would block for real, unseen:\n"
                f"{describe_all(reals)}"
            )

        def hint() -> str:
            found = uncontrolled(broker, traced)
            if not found:
                return ""
            return (
                " Real primitives the broker holds (held ones first), which the scheduler "
                f"cannot see:\n{describe_all(found)}\n"
            )

        self.runtime.blocked_hint = hint

    def on_producer(self, index: int, op: Op, label: str) -> None:
        self._producers[index].submit(op, label)

    def on_loop(self, op: Op) -> None:
        self.loop.call_soon_threadsafe(op)

    def on_loop_now(self, op: Op) -> None:
        """Run ``op`` at once; safe because every managed thread is parked while we run."""
        op()

    def mark_loop(self, text: str) -> None:
        self.runtime.trace.mark(self.loop.managed.index, text)

    def settle(self, strategy: SchedulingStrategy, label: str) -> None:
        self.runtime.trace.begin_segment(label)
        self.runtime.run(strategy)

    def close(self) -> None:
        """Stop the loop and every thread; restore the patched modules."""
        try:
            if not self.runtime.aborted:
                self.loop.stop_and_wait()
                self.runtime.run(RunToCompletion())
        finally:
            self._exit.close()
            _discard_pending_tasks(self.loop)
            self.loop.close()


class FreeHarness:
    """Free-running stress mode: see the module docstring."""

    SWITCH_INTERVAL = 1e-6

    def __init__(self, impl: BrokerImpl, producers: int) -> None:
        self._old_interval = sys.getswitchinterval()
        sys.setswitchinterval(self.SWITCH_INTERVAL)
        self._tick_lock = threading.Lock()
        self._ticks = 0
        self.crashes: list[Crash] = []
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(
            lambda _, context: self.crashes.append(Crash("loop", "a callback", str(context)))
        )
        self._loop_thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._loop_thread.start()
        self._queues: list[queue.Queue[tuple[Op, str] | None]] = []
        self._threads = []
        for index in range(producers):
            ops: queue.Queue[tuple[Op, str] | None] = queue.Queue()
            thread = threading.Thread(target=self._work, args=(index, ops), daemon=True)
            thread.start()
            self._queues.append(ops)
            self._threads.append(thread)

    def tick(self) -> int:
        with self._tick_lock:
            self._ticks += 1
            return self._ticks

    def on_producer(self, index: int, op: Op, label: str) -> None:
        self._queues[index].put((op, label))

    def on_loop(self, op: Op) -> None:
        self.loop.call_soon_threadsafe(op)

    def on_loop_now(self, op: Op) -> None:
        """Run ``op`` on the loop thread and wait for it."""

        async def call() -> None:
            op()

        asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=10)

    def mark_loop(self, text: str) -> None:
        """Free-running threads keep no trace."""

    def settle(self, strategy: SchedulingStrategy, label: str) -> None:
        """Wait for every producer's operations, then let the loop drain: a few round trips
        through its ready queue deliver what the producers scheduled and what that woke up."""
        for ops in self._queues:
            ops.join()
        for _ in range(8):
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop).result(timeout=10)

    def close(self) -> None:
        for ops in self._queues:
            ops.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._loop_thread.join(timeout=10)
        _discard_pending_tasks(self.loop)
        self.loop.close()
        sys.setswitchinterval(self._old_interval)

    def _work(self, index: int, ops: queue.Queue[tuple[Op, str] | None]) -> None:
        while (job := ops.get()) is not None:
            op, label = job
            try:
                op()
            except BaseException:
                self.crashes.append(Crash(f"producer-{index}", label, traceback.format_exc()))
            finally:
                ops.task_done()
        ops.task_done()


def _discard_pending_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Close, without running, the tasks of a stopped loop (clients of a failed example): their
    threads are gone, and their clean-up would only fail again."""
    for task in asyncio.all_tasks(loop):
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        task.get_coro().close()
