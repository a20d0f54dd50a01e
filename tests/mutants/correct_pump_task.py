"""Correct: producers hand items to a loop-side pump task through a deque guarded by a Condition.

Seed API only, plus ``wait_idle``. Producers never touch a queue: under ``self._cond`` (a
``threading.Condition``, used as the broker's one lock) ``emit`` and ``close`` append
``(queue, item)`` pairs to ``self._outbox``; the first append while no pump is active sets
``self._pumping`` and asks the loop, with ``call_soon_threadsafe``, to start the pump task. The
pump takes the whole outbox under the lock, delivers it outside the lock, and repeats; when it
finds the outbox empty it clears ``_pumping`` in that SAME critical section, so an item appended
at any moment either is taken by the running pump or starts a new one: no lost wake-up. There is
at most one pump at a time and the outbox is FIFO in lock order, so every queue gets its items in
the order the producers took the lock: events before ``done``, nothing after it (an emit after
``close`` is dropped under the lock).

``close`` removes the run's entry from the subscriber map at once (every subscriber in it gets
done through the outbox); a subscriber arriving after close gets done at once and is never
registered. ``wait_idle`` lets a producer thread wait until everything emitted so far is in the
queues (the pump notifies the Condition when it goes idle).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Any

Event = dict[str, Any]
Queue = asyncio.Queue[Event]


class PumpTaskBroker:
    """A Condition-guarded outbox drained by one loop-side pump task at a time."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        if max_closed_runs < 1:
            raise ValueError("max_closed_runs must be >= 1")
        self._cond = threading.Condition()  # guards every attribute below
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: dict[Hashable, dict[Queue, None]] = {}  # dict as an ordered set
        self._closed: OrderedDict[Hashable, None] = OrderedDict()
        self._max_closed_runs = max_closed_runs
        self._outbox: deque[tuple[Queue, Event]] = deque()
        self._pumping = False  # a pump task is scheduled or running
        self._pump_task: asyncio.Task[None] | None = None  # the loop keeps only a weak reference

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._cond:
            self._loop = loop

    def subscribe(self, run_id: Hashable) -> Queue:
        queue: Queue = asyncio.Queue()
        with self._cond:
            if run_id in self._closed:
                queue.put_nowait({"type": "done"})
            else:
                self._subscribers.setdefault(run_id, {})[queue] = None
        return queue

    def unsubscribe(self, run_id: Hashable, queue: Queue) -> None:
        with self._cond:
            subs = self._subscribers.get(run_id)
            if subs is None or queue not in subs:
                return
            del subs[queue]
            if not subs:
                del self._subscribers[run_id]

    def emit(self, run_id: Hashable, event: Event) -> None:
        if not isinstance(event, dict):
            raise TypeError(f"event must be a dict, not {type(event).__name__}")
        with self._cond:
            if run_id in self._closed:
                return
            for queue in self._subscribers.get(run_id, {}):
                self._send_locked(queue, event)

    def close(self, run_id: Hashable) -> None:
        with self._cond:
            if run_id in self._closed:
                return
            self._closed[run_id] = None
            if len(self._closed) > self._max_closed_runs:
                self._closed.popitem(last=False)
            for queue in self._subscribers.pop(run_id, {}):
                self._send_locked(queue, {"type": "done"})

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._cond:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._cond:
            return run_id in self._closed

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block a producer thread (never the loop's) until every item handed over so far is in
        its queue; return False if ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pumping, timeout)

    # -- producer side, lock held ----------------------------------------------------------

    def _send_locked(self, queue: Queue, item: Event) -> None:
        loop = self._loop
        if loop is None:
            return
        self._outbox.append((queue, item))
        if self._pumping:
            return
        try:
            loop.call_soon_threadsafe(self._start_pump)
        except RuntimeError:  # a closed loop: nobody reads the queues any more
            self._outbox.clear()
            return
        self._pumping = True

    # -- loop side -------------------------------------------------------------------------

    def _start_pump(self) -> None:
        assert self._loop is not None
        self._pump_task = self._loop.create_task(self._pump())

    async def _pump(self) -> None:
        while True:
            with self._cond:
                batch = list(self._outbox)
                self._outbox.clear()
                if not batch:
                    self._pumping = False
                    self._pump_task = None
                    self._cond.notify_all()
                    return
            for queue, item in batch:
                queue.put_nowait(item)
            await asyncio.sleep(0)  # let the consumers read before the next batch
