"""emit pushes to the subscribers after releasing the broker lock: events arrive out of id order.
Caught by: order

A copy of ``correct_per_subscriber_locks`` where ``emit`` numbers the event and snapshots the
subscribers under the broker lock, then releases it before pushing ("each subscriber has its own
lock now"). Two producers emitting to the same run then push their events to each subscriber
in whatever order they happen to run: one subscriber can get id 2 before id 1, and two
subscribers can see the same two events in opposite orders.

Minimal interleaving: one subscriber of r; emit(r) on producer 0 numbers its event (id 1) and is
preempted before pushing; emit(r) on producer 1 numbers (id 2) and pushes; producer 0 pushes.
The subscriber gets id 2, then id 1.
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


class PushOutsideLockBroker:
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
            subs = list(self._subscribers.get(run_id, {}).values())
        for sub in subs:
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
