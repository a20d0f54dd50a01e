"""Correct: a lock per subscriber guards its pending items between producers and the loop.

Seed API plus event ids (no replay, no backlog limit). ``self._lock`` (an ``RLock``) guards the
subscriber map, the closed runs and the id counters; each subscriber (``_Sub``) has its own
``Lock`` that guards only its ``pending`` deque and its ``scheduled`` flag. Lock order is always
broker lock -> subscriber lock; the loop's ``drain`` takes only the subscriber lock, so
delivering to one subscriber never waits for producers working on another.

``emit`` numbers the event (``"id"`` 1, 2, ... per run) and pushes it to every live subscriber
while holding the broker lock, so each subscriber's pending deque is in id order, and ``close``
pushes done the same way, behind every event numbered before it. ``push`` appends and, if no
drain is pending, marks one pending and schedules it; ``drain`` takes the whole deque and clears
the mark in the same critical section, so no wake-up is lost. ``close`` removes the run's entry
from the subscriber map at once; a subscriber arriving after close gets done at once and is never
registered; an emit after close is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Any

Event = dict[str, Any]
Queue = asyncio.Queue[Event]


class _Sub:
    """One subscriber: its queue, and the items on their way to it."""

    def __init__(self, queue: Queue, loop: asyncio.AbstractEventLoop) -> None:
        self.queue = queue
        self.loop = loop
        self.lock = threading.Lock()  # guards pending and scheduled
        self.pending: deque[Event] = deque()
        self.scheduled = False
        self.finished = False  # loop thread only: done delivered

    def push(self, item: Event) -> None:
        """Hand ``item`` over; any thread, called with the broker lock held."""
        with self.lock:
            self.pending.append(item)
            if self.scheduled:
                return
            self.scheduled = True
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads the queue any more
            self.loop.call_soon_threadsafe(self.drain)

    def drain(self) -> None:
        """Deliver what is pending; runs on the loop."""
        with self.lock:
            items = list(self.pending)
            self.pending.clear()
            self.scheduled = False
        for item in items:
            if self.finished:
                return
            self.queue.put_nowait(item)
            self.finished = item.get("type") == "done"


class PerSubscriberLockBroker:
    """A broker lock for the map and the ids, and one lock per subscriber for its hand-off."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        if max_closed_runs < 1:
            raise ValueError("max_closed_runs must be >= 1")
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        # run id -> {queue: subscriber}; only live subscribers, never an empty dict.
        self._subscribers: dict[Hashable, dict[Queue, _Sub]] = {}
        self._last_ids: dict[Hashable, int] = {}  # open runs only
        self._closed: OrderedDict[Hashable, None] = OrderedDict()
        self._max_closed_runs = max_closed_runs

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop

    def subscribe(self, run_id: Hashable) -> Queue:
        queue: Queue = asyncio.Queue()
        with self._lock:
            if run_id in self._closed:
                queue.put_nowait({"type": "done"})
                return queue
            loop = self._loop if self._loop is not None else asyncio.get_running_loop()
            self._subscribers.setdefault(run_id, {})[queue] = _Sub(queue, loop)
        return queue

    def unsubscribe(self, run_id: Hashable, queue: Queue) -> None:
        with self._lock:
            subs = self._subscribers.get(run_id)
            if subs is None or queue not in subs:
                return
            sub = subs.pop(queue)
            if not subs:
                del self._subscribers[run_id]
        sub.finished = True  # called on the loop: a pending drain delivers nothing more

    def emit(self, run_id: Hashable, event: Event) -> None:
        if not isinstance(event, dict):
            raise TypeError(f"event must be a dict, not {type(event).__name__}")
        if "id" in event:
            raise ValueError('"id" is reserved: the broker numbers events')
        with self._lock:
            if run_id in self._closed:
                return
            event_id = self._last_ids.get(run_id, 0) + 1
            self._last_ids[run_id] = event_id
            item = {**event, "id": event_id}
            for sub in self._subscribers.get(run_id, {}).values():
                sub.push(item)

    def close(self, run_id: Hashable) -> None:
        with self._lock:
            if run_id in self._closed:
                return
            self._closed[run_id] = None
            self._last_ids.pop(run_id, None)
            if len(self._closed) > self._max_closed_runs:
                self._closed.popitem(last=False)
            for sub in self._subscribers.pop(run_id, {}).values():
                sub.push({"type": "done"})

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._lock:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._lock:
            return run_id in self._closed
