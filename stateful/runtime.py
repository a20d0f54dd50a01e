"""The runtime that runs real OS threads one at a time.

Every managed thread is a real ``threading.Thread``, but it only runs while it holds its baton.
At each *switch point* (before every line executed in a traced module, through ``sys.settrace``
installed in managed threads only, and before every operation on a controlled primitive,
``stateful.primitives``) the scheduling strategy chooses which runnable thread goes next. When
it keeps the running thread, that thread asks it itself and goes on; when it picks another, or
the running thread blocks or runs out of work, the thread gives its baton back to the
controller (the test's own thread), which hands the chosen thread its baton. Either way the
strategy sees the same calls, so where the choice is made changes nothing but the cost.

What this promises:

* at most one managed thread runs at any time, and the controller runs only while all of them
  are parked, so the controller may read any state they share without locks;
* the same strategy choices give the same execution, as long as the code under test has no
  nondeterminism of its own (the ``stateful.replay`` ledger detects when it does);
* no hang: a thread that does not reach its next switch point within the watchdog time (it
  blocked on something the scheduler does not control) fails the run with its stack, every
  thread blocked on a controlled primitive is reported as a deadlock with each thread's
  position, and a run that keeps going past its step budget is reported as a livelock.

Managed threads are the runtime's own (``worker``: the producers; the loop of ``stateful.loop``)
and the threads the code under test starts, which ``stateful.threads`` hands to ``adopt``: they
are scheduled, traced and reported the same way, and an exception escaping one is a ``Crash``.
When the threads settle, such a thread waiting for work (a condition, an event, a queue's next
item) is an idle dispatcher, not part of a deadlock; one still runnable when the step budget
runs out (a thread that spins) is named in the livelock. ``shutdown`` unwinds them all.

Time is virtual (``VirtualClock``): it stands still while any thread can run and jumps to the
earliest timeout only when none can, so timeouts, sleeps and ``call_later`` timers are
deterministic; ``stateful.clock`` makes it what the code under test reads.
The data flows one way: strategy choices in, the schedule executed, the ``Trace`` out.
"""

from __future__ import annotations

import _thread
import functools
import os
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from stateful.errors import Deadlock, Livelock, SchedulerAbort, WatchdogTimeout
from stateful.strategy import SchedulingStrategy
from stateful.trace import Position, Trace

# The runtime's own batons are real locks, captured here: they must never be controlled.
_new_real_lock = _thread.allocate_lock
# Captured before ``stateful.threads`` patches it: the runtime waits for its threads for real.
_REAL_JOIN = threading.Thread.join

DEFAULT_WATCHDOG_SECONDS = 10.0
DEFAULT_MAX_STEPS = 20_000
DEFAULT_SETTLE_SECONDS = 5.0


def _always() -> bool:
    return True


@dataclass
class VirtualClock:
    """Seconds since the run began, advanced only by the runtime."""

    now: float = 0.0


@dataclass(eq=False)
class ManagedThread:
    """One real thread under the scheduler's control.

    ``of_code`` marks a thread the code under test started (``adopt``), not one of the
    runtime's own (a producer, the loop). ``waiting_for_work`` is set while such a thread waits
    for a signal (a condition, an event, a queue's next item), where a dispatcher idles."""

    index: int
    name: str
    body: Callable[[], None]
    baton: Any = field(default_factory=_new_real_lock)
    can_run: Callable[[], bool] = _always
    wake_at: float | None = None
    blocked_on: str | None = None
    position: Position | None = None
    finished: bool = False
    thread: threading.Thread | None = None
    of_code: bool = False
    waiting_for_work: bool = False

    def runnable(self, now: float) -> bool:
        if self.finished:
            return False
        return self.can_run() or (self.wake_at is not None and now >= self.wake_at)


@dataclass
class Crash:
    """An exception that escaped a thread's operation or a loop callback."""

    thread: str
    where: str
    text: str


class _Operation:
    __slots__ = ("fn", "label")

    def __init__(self, fn: Callable[[], None], label: str) -> None:
        self.fn = fn
        self.label = label


class Worker:
    """A managed thread that runs submitted operations in order, like a producer thread."""

    def __init__(self, runtime: Runtime, name: str) -> None:
        self._runtime = runtime
        self._ops: deque[_Operation] = deque()
        self._stopping = False
        self.managed = runtime._spawn(name, self._run)

    @property
    def name(self) -> str:
        return self.managed.name

    @property
    def busy(self) -> bool:
        return bool(self._ops) or self.managed.can_run is not self._has_work

    def submit(self, fn: Callable[[], None], label: str) -> None:
        """Queue ``fn`` to run on this thread at its next turn; called by the controller."""
        self._ops.append(_Operation(fn, label))

    def stop(self) -> None:
        self._stopping = True

    def _has_work(self) -> bool:
        return bool(self._ops) or self._stopping

    def _run(self) -> None:
        runtime = self._runtime
        while True:
            runtime._park(self.managed, self._has_work, Position.idle(), None, None)
            if not self._ops:
                return
            op = self._ops.popleft()
            runtime.trace.mark(self.managed.index, f"begin {op.label}")
            try:
                op.fn()
            except SchedulerAbort:
                raise
            except BaseException:
                runtime.record_crash(self.name, op.label, traceback.format_exc())
            runtime.trace.mark(self.managed.index, f"end {op.label}")


_registry: dict[int, tuple[Runtime, ManagedThread]] = {}
# Thread id of a controller -> its live runtime: a thread the code under test starts while the
# controller runs (in a broker's ``__init__``) belongs to that runtime.
_controllers: dict[int, Runtime] = {}


def current() -> tuple[Runtime, ManagedThread] | None:
    """The runtime and managed thread of the calling thread, or None for any other thread."""
    return _registry.get(_thread.get_ident())


def controlled_by() -> Runtime | None:
    """The live runtime whose controller is the calling thread, if it is one."""
    return _controllers.get(_thread.get_ident())


class Runtime:
    """Runs managed threads one at a time under a scheduling strategy."""

    def __init__(
        self,
        traced_files: Collection[str],
        *,
        watchdog_seconds: float = DEFAULT_WATCHDOG_SECONDS,
        max_steps: int = DEFAULT_MAX_STEPS,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
    ) -> None:
        self.traced_files = frozenset(os.path.normcase(f) for f in traced_files)
        self.watchdog_seconds = watchdog_seconds
        self.max_steps = max_steps
        self.settle_seconds = settle_seconds
        self.clock = VirtualClock()
        self.trace = Trace()
        self.crashes: list[Crash] = []
        self.threads: list[ManagedThread] = []
        self._controller_baton = _new_real_lock()
        self._controller_baton.acquire()
        self._current: ManagedThread | None = None
        self._aborted = False
        self._ticks = 0
        # While ``run`` runs, the running thread makes the strategy's choices at its own switch
        # points (``_may_switch``), and leaves the one that switches away in ``_switch_to``.
        self._strategy: SchedulingStrategy | None = None
        self._steps = 0
        self._switch_to: int | None = None
        self._controller_ident = _thread.get_ident()
        self._adopted = 0
        _controllers[self._controller_ident] = self
        #: Says, when a thread trips the watchdog, what real primitives it may be blocked on.
        self.blocked_hint: Callable[[], str] | None = None

    # -- controller side -------------------------------------------------------------------

    def worker(self, name: str) -> Worker:
        """Start a managed thread that runs submitted operations (a producer thread)."""
        return Worker(self, name)

    def run(self, strategy: SchedulingStrategy) -> None:
        """Run every thread's pending work, as the strategy chooses, until nothing can run.

        Raises ``Deadlock``, ``WatchdogTimeout`` or ``Livelock``; after any of them the runtime is
        aborted and must be shut down.
        """
        self._check_usable()
        settle_until = self.clock.now + self.settle_seconds
        self._steps = 0
        self._strategy = strategy
        try:
            while True:
                if self._switch_to is not None:
                    chosen, self._switch_to = self._switch_to, None
                    self._resume(self.threads[chosen])
                    continue
                runnable = self._runnable()
                if not runnable:
                    if self._advance_time(settle_until):
                        continue
                    self._check_deadlock()
                    return
                self._steps += 1
                if self._steps > self.max_steps:
                    self._fail(Livelock(self._livelock_message()))
                current = self._current
                at_sync = (
                    current is not None and current.position is not None and current.position.sync
                )
                index = current.index if current is not None else None
                self._resume(self.threads[strategy.choose(runnable, index, at_sync)])
        finally:
            self._strategy = None

    def tick(self) -> int:
        """A logical timestamp: strictly increasing across all threads, since one runs at a time."""
        self._ticks += 1
        return self._ticks

    def record_crash(self, thread: str, where: str, text: str) -> None:
        self.crashes.append(Crash(thread, where, text))

    def where(self) -> str:
        """Each live thread's position, one line each."""
        return "\n".join(
            f"  {t.name}: {t.position.describe() if t.position else 'not started'}"
            + (f" (waiting for {t.blocked_on})" if t.blocked_on else "")
            for t in self.threads
            if not t.finished
        )

    def shutdown(self) -> None:
        """Unwind every managed thread and wait for them; safe to call more than once."""
        if not self._aborted:
            self._aborted = True
            if _controllers.get(self._controller_ident) is self:
                del _controllers[self._controller_ident]
            for thread in self.threads:
                if not thread.finished:
                    thread.baton.release()
        for thread in self.threads:
            if thread.thread is not None:
                # Not ``join``: on a thread of the code under test that is the controlled one.
                _REAL_JOIN(thread.thread, self.watchdog_seconds)

    def adopt(
        self, thread: threading.Thread, what: str, start: Callable[[], None]
    ) -> ManagedThread:
        """Make ``thread``, which the code under test is starting, a managed thread.

        ``start`` is the real ``Thread.start``: the thread is a real one, with its ident, name
        and ``threading.current_thread()``, but its ``run`` waits for its baton and is traced,
        and an exception escaping it is a crash. Called by the controller or by the running
        managed thread; the new thread is parked, runnable, when this returns."""
        self._check_usable()
        self._adopted += 1
        name = f"thread-{self._adopted} ({what})"
        run = thread.run
        managed = ManagedThread(len(self.threads), name, functools.partial(self._run_code, run))
        managed.of_code = True
        managed.thread = thread
        managed.position = Position("", 0, "", f"start {name}")
        managed.baton.acquire()
        ready = _new_real_lock()
        ready.acquire()
        thread.run = functools.partial(self._bootstrap, managed, ready)  # type: ignore[method-assign]
        self.threads.append(managed)
        start()
        if not ready.acquire(timeout=self.watchdog_seconds):
            raise RuntimeError(f"thread {name} did not start within {self.watchdog_seconds:g}s")
        return managed

    @property
    def aborted(self) -> bool:
        return self._aborted

    def _spawn(self, name: str, body: Callable[[], None]) -> ManagedThread:
        self._check_usable()
        managed = ManagedThread(index=len(self.threads), name=name, body=body)
        managed.baton.acquire()
        self.threads.append(managed)
        managed.thread = threading.Thread(
            target=self._bootstrap, args=(managed,), name=f"stateful-{name}", daemon=True
        )
        managed.thread.start()
        self._wait_for(managed)
        return managed

    def _resume(self, thread: ManagedThread) -> None:
        self._current = thread
        if thread.position is not None:
            self.trace.step(thread.index, thread.position)
        thread.baton.release()
        self._wait_for(thread)

    def _wait_for(self, thread: ManagedThread) -> None:
        if self._controller_baton.acquire(timeout=self.watchdog_seconds):
            return
        ident = thread.thread.ident if thread.thread is not None else None
        frame = sys._current_frames().get(ident) if ident is not None else None
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no frame)"
        last = thread.position.describe() if thread.position else "its start"
        # Asked now, while the thread that holds what it waits for still holds it.
        hint = self.blocked_hint() if self.blocked_hint is not None else ""
        self._fail(
            WatchdogTimeout(
                f"thread {thread.name} did not reach its next switch point within "
                f"{self.watchdog_seconds:g}s; its last switch point was {last}. It is blocked "
                f"outside the scheduler's control (a real lock, I/O, a sleep in an untraced "
                f"module).{hint} Its stack now:\n{stack}"
            )
        )

    def _runnable(self) -> list[int]:
        return [t.index for t in self.threads if t.runnable(self.clock.now)]

    def _advance_time(self, settle_until: float) -> bool:
        deadlines = [
            t.wake_at
            for t in self.threads
            if not t.finished and t.wake_at is not None and t.wake_at <= settle_until
        ]
        if not deadlines:
            return False
        self.clock.now = max(self.clock.now, min(deadlines))
        return True

    def _check_deadlock(self) -> None:
        # A thread of the code under test waiting for work is an idle dispatcher, not a block.
        blocked = [
            t
            for t in self.threads
            if not t.finished
            and t.blocked_on is not None
            and not (t.of_code and t.waiting_for_work)
        ]
        if blocked:
            self._fail(Deadlock(f"every thread with work left is blocked:\n{self.where()}"))

    def _livelock_message(self) -> str:
        message = f"no quiescence after {self.max_steps} steps"
        spinning = [t for t in self.threads if t.of_code and t.runnable(self.clock.now)]
        for t in spinning:
            at = t.position.describe() if t.position else "its start"
            message += (
                f"; thread {t.name}, started by the code under test, is still runnable at {at}:"
                " a thread that loops without waiting on a lock, condition, event or queue"
                " never lets the threads settle"
            )
        return f"{message}\n{self.where()}"

    def _fail(self, error: Exception) -> None:
        self.shutdown()
        raise error

    def _check_usable(self) -> None:
        if self._aborted:
            raise RuntimeError("this runtime was shut down; start a new one")

    # -- managed-thread side ---------------------------------------------------------------

    def _bootstrap(self, managed: ManagedThread, ready: Any = None) -> None:
        _registry[_thread.get_ident()] = (self, managed)
        try:
            if ready is None:
                self._park(managed, _always, Position.idle(), None, None)
            else:
                # Started by the running thread, which goes on running: park without waking
                # the controller, and tell the starter once parked.
                ready.release()
                managed.baton.acquire()
                if self._aborted:
                    raise SchedulerAbort
            sys.settrace(self._global_tracer)
            managed.body()
        except SchedulerAbort:
            pass
        finally:
            sys.settrace(None)
            del _registry[_thread.get_ident()]
            managed.finished = True
            if not self._aborted:
                self._controller_baton.release()

    def _run_code(self, run: Callable[[], None]) -> None:
        """The body of a thread of the code under test: its ``run``, a crash if it raises."""
        managed = self._managed_self()
        try:
            run()
        except SchedulerAbort:
            raise
        except BaseException:
            self.record_crash(managed.name, "its run()", traceback.format_exc())

    def _park(
        self,
        managed: ManagedThread,
        can_run: Callable[[], bool],
        position: Position,
        blocked_on: str | None,
        wake_at: float | None,
        waiting_for_work: bool = False,
    ) -> None:
        if self._aborted:
            raise SchedulerAbort
        managed.can_run = can_run
        managed.position = position
        managed.blocked_on = blocked_on
        managed.wake_at = wake_at
        managed.waiting_for_work = waiting_for_work
        self._controller_baton.release()
        managed.baton.acquire()
        managed.blocked_on = None
        managed.wake_at = None
        managed.waiting_for_work = False
        if self._aborted:
            raise SchedulerAbort

    def switch_point(self, note: str, *, sync: bool = True) -> None:
        """A point where the calling managed thread may be preempted; ``sync`` marks it as a
        synchronisation point (see ``stateful.strategy``)."""
        managed = self._managed_self()
        self._may_switch(managed, Position.of_caller(self.traced_files, note, sync=sync))

    def wait_until(
        self,
        condition: Callable[[], bool],
        note: str,
        *,
        blocked_on: str | None,
        timeout: float | None = None,
        for_work: bool = False,
    ) -> bool:
        """Park the calling managed thread until ``condition()`` holds (or the virtual timeout
        passes) and the strategy picks it; return ``condition()``. ``blocked_on`` names what it
        waits for (for deadlock reports); None means waiting there is idleness, not a block.
        ``for_work`` says it waits for a signal (not a lock): a thread of the code under test
        left waiting there when the threads settle is idle, not deadlocked."""
        managed = self._managed_self()
        wake_at = None if timeout is None else self.clock.now + max(timeout, 0.0)
        position = Position.of_caller(self.traced_files, note)
        self._park(managed, condition, position, blocked_on, wake_at, for_work)
        return condition()

    def _managed_self(self) -> ManagedThread:
        entry = current()
        if entry is None or entry[0] is not self:
            raise RuntimeError("switch points are only for threads this runtime manages")
        return entry[1]

    def _global_tracer(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "call" and os.path.normcase(frame.f_code.co_filename) in self.traced_files:
            return self._line_tracer
        return None

    def _line_tracer(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            self._may_switch(self._managed_self(), Position.of_frame(frame))
        return self._line_tracer

    def _may_switch(self, managed: ManagedThread, position: Position) -> None:
        """A switch point where ``managed`` could go on running.

        The choice is the one the controller would make if the thread parked here, made here:
        the same runnable threads (every other one is parked), the same strategy call, the same
        trace entry and step count. Only a switch to another thread costs the two hand-offs of
        a park; at most switch points the running thread goes on, without one."""
        strategy = self._strategy
        if strategy is None or self._steps >= self.max_steps:
            self._park(managed, _always, position, None, None)  # the controller decides
            return
        if self._aborted:
            raise SchedulerAbort
        managed.can_run = _always  # as parking here would set it: a running thread can run
        managed.position = position
        self._steps += 1
        chosen = strategy.choose(self._runnable(), managed.index, position.sync)
        if chosen == managed.index:
            self.trace.step(managed.index, position)
            return
        self._switch_to = chosen
        self._park(managed, _always, position, None, None)


@contextmanager
def running(runtime: Runtime) -> Iterator[Runtime]:
    """Shut the runtime down on the way out, however the block ends."""
    try:
        yield runtime
    finally:
        runtime.shutdown()
