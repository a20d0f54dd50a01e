"""Lost wake-up in a pump task: it finds the outbox empty, unlocks, and only then marks itself idle.
Caught by: no-hang-after-done
Also caught by: no-lost-events

A copy of ``correct_pump_task`` whose pump was refactored into "take a batch" and "go idle": the
check that the outbox is empty and the clearing of ``_pumping`` are now two critical sections.
A producer that appends in between sees ``_pumping`` still set and starts no pump; the pump then
goes idle with that item in the outbox, where it stays until some later emit or close (of any
run) starts a pump.

Minimal interleaving: subscribe(r); emit(r) starts the pump; the pump delivers, loops, takes an
empty batch and is preempted before ``_go_idle``; close(r) on a producer appends done and sees
``_pumping`` set; the pump goes idle. The subscriber never gets done.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Any

Event = dict[str, Any]
Queue = asyncio.Queue[Event]


class PumpIdleUnlockedBroker:
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
        while batch := self._take_batch():
            for queue, item in batch:
                queue.put_nowait(item)
            await asyncio.sleep(0)  # let the consumers read before the next batch
        self._go_idle()

    def _take_batch(self) -> list[tuple[Queue, Event]]:
        with self._cond:
            batch = list(self._outbox)
            self._outbox.clear()
            return batch

    def _go_idle(self) -> None:
        with self._cond:
            self._pumping = False
            self._pump_task = None
            self._cond.notify_all()
