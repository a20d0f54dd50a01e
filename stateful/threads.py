"""Threads that the code under test starts become managed threads of the runtime.

While ``stateful.primitives.controlled`` is active, ``threading.Thread.start`` asks who starts
the thread, by the rule the primitives follow. When the starting thread is a managed thread, or
a frame of a module under test is on its stack and it is the controller of a live runtime (a
broker's ``__init__`` during the machine's set-up), the new thread is ``Runtime.adopt``-ed: it
runs only when the strategy picks it, lines of traced modules are its switch points, it appears
in the timeline and in ``Runtime.where()``, and an exception escaping its ``run`` is a crash
(``[no-exception]``). That covers ``threading.Thread`` and its subclasses, ``threading.Timer``,
a ``ThreadPoolExecutor``'s workers, and so the asyncio default executor's behind
``loop.run_in_executor(None, ...)`` and ``asyncio.to_thread``. Every other thread (the runtime's
own, Hypothesis's, pytest's) starts as usual and runs free.

Of an adopted thread:

* ``ident``, ``native_id``, ``name``, ``daemon`` and ``threading.current_thread()`` are those of
  the real thread that runs it;
* ``is_alive()`` is true until its ``run`` has returned under the scheduler (not until the OS
  thread is gone, a moment that is not the schedule's);
* ``join()`` from a managed thread is a controlled wait (a virtual timeout); from any other
  thread it returns at once once the thread has finished or when given a timeout, and raises
  ``RuntimeError`` rather than wait for ever, since only the scheduler could run the thread;
* a ``Timer``'s ``finished`` event is a controlled ``Event``: its interval is virtual time and
  ``cancel`` wakes it.

When the runtime shuts down, adopted threads are unwound like the producers. A
``ThreadPoolExecutor`` worker logs its unwinding as "Exception in worker"; that record, and only
that one, is dropped. The module-level lock ``concurrent.futures.thread`` takes in every
``submit`` is replaced by a controlled one for the block, since a worker start, a switch point,
happens while it is held.
"""

from __future__ import annotations

import concurrent.futures.thread
import functools
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from stateful import runtime
from stateful.errors import SchedulerAbort

_REAL_START = threading.Thread.start
_REAL_JOIN = threading.Thread.join
_REAL_IS_ALIVE = threading.Thread.is_alive
_REAL_EVENT = threading.Event
# The attribute of an adopted ``Thread`` that holds its runtime and managed thread.
_ADOPTED = "_stateful_adopted"


def _on_behalf_of(files: frozenset[str]) -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if os.path.normcase(frame.f_code.co_filename) in files:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _what(thread: threading.Thread) -> str:
    """What the thread runs, for its name in reports: its target, else its class's ``run``."""
    target = thread.function if isinstance(thread, threading.Timer) else thread._target  # type: ignore[attr-defined]
    while isinstance(target, functools.partial):
        target = target.func
    if target is None:
        return f"{type(thread).__qualname__}.run"
    return str(getattr(target, "__qualname__", type(target).__qualname__))


def _adopted(thread: threading.Thread) -> tuple[runtime.Runtime, runtime.ManagedThread] | None:
    adopted: tuple[runtime.Runtime, runtime.ManagedThread] | None = getattr(thread, _ADOPTED, None)
    if adopted is None or adopted[0].aborted:
        return None
    return adopted


def _is_alive(self: threading.Thread) -> bool:
    adopted = _adopted(self)
    if adopted is None:
        return bool(_REAL_IS_ALIVE(self))
    return not adopted[1].finished


def _join(self: threading.Thread, timeout: float | None = None) -> None:
    adopted = _adopted(self)
    if adopted is None or adopted[1].finished:
        _REAL_JOIN(self, timeout)  # its OS thread ends without another switch point
        return
    rt, managed = adopted
    entry = runtime.current()
    if entry is None or entry[0] is not rt:
        if timeout is not None:
            return  # the thread cannot run while its caller waits: the timeout passes
        raise RuntimeError(
            f"joining thread {managed.name}, which only the scheduler runs, from thread "
            f"{threading.current_thread().name}, which it does not run, would wait for ever"
        )
    if entry[1] is managed:
        raise RuntimeError("cannot join current thread")
    rt.wait_until(
        lambda: managed.finished,
        f"join {managed.name}",
        blocked_on=f"thread {managed.name}",
        timeout=timeout,
    )
    if managed.finished:
        _REAL_JOIN(self)


class _DropUnwinding(logging.Filter):
    """Drops the records of threads unwound by ``SchedulerAbort``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SchedulerAbort))


def patch(
    files: frozenset[str], make_event: Callable[[], Any], make_lock: Callable[[], Any]
) -> list[Callable[[], None]]:
    """Adopt the threads started on behalf of ``files``, as the module docstring says; return
    how to undo it. ``make_event`` and ``make_lock`` build controlled primitives."""

    def start(self: threading.Thread) -> None:
        entry = runtime.current()
        if entry is not None:
            rt = entry[0]
            rt.switch_point(f"start a thread running {_what(self)}")
        else:
            controller = runtime.controlled_by()
            if controller is None or not _on_behalf_of(files):
                _REAL_START(self)
                return
            rt = controller
        if isinstance(self, threading.Timer) and isinstance(self.finished, _REAL_EVENT):
            finished = make_event()
            if self.finished.is_set():  # cancelled before it started
                finished.set()
            self.finished = finished
        managed = rt.adopt(self, _what(self), functools.partial(_REAL_START, self))
        setattr(self, _ADOPTED, (rt, managed))

    undo: list[Callable[[], None]] = []
    for name, replacement in (("start", start), ("join", _join), ("is_alive", _is_alive)):
        real = vars(threading.Thread)[name]
        setattr(threading.Thread, name, replacement)
        undo.append(functools.partial(setattr, threading.Thread, name, real))
    logger = logging.getLogger("concurrent.futures")
    drop = _DropUnwinding()
    logger.addFilter(drop)
    undo.append(functools.partial(logger.removeFilter, drop))
    module = concurrent.futures.thread
    real_lock = module._global_shutdown_lock
    module._global_shutdown_lock = make_lock()
    undo.append(functools.partial(setattr, module, "_global_shutdown_lock", real_lock))
    return undo
