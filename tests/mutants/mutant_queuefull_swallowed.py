"""A full subscriber queue's QueueFull is swallowed: the event is dropped and no marker says so.
Caught by: no-lost-events
Also caught by: overflow-marker, order

A copy of ``correct_queue_subclass`` whose ``_deliver`` suppresses ``asyncio.QueueFull`` ("a
slow client can skip an event"). The subscriber stays registered and, once it reads again, gets
the later events after a hole, with no overflow marker to tell the client that anything is
missing. No interleaving is needed: ``max_backlog + 1`` events to a subscriber that
does not read.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

Event = dict[str, Any]


class SubscriberQueue(asyncio.Queue[Event]):
    """A subscriber's queue: ``max_backlog`` events, then one place for its last item."""

    def __init__(self, run_id: Hashable, max_backlog: int) -> None:
        super().__init__(maxsize=max_backlog + 1)
        self.run_id = run_id
        self.max_backlog = max_backlog
        self.ended = False  # loop thread only: got done or the overflow marker

    def put_event(self, item: Event) -> None:
        """Put an event, or raise ``asyncio.QueueFull`` when ``max_backlog`` are waiting."""
        if self.qsize() >= self.max_backlog:
            raise asyncio.QueueFull
        self.put_nowait(item)

    def end(self, item: Event) -> None:
        """Put the last item (done or overflow); there is always a place for it."""
        self.ended = True
        self.put_nowait(item)


class QueueFullSwallowedBroker:
    """One lock; a set of SubscriberQueues per run; a full queue drops the event."""

    def __init__(self, *, max_backlog: int = 10_000, max_closed_runs: int = 10_000) -> None:
        if max_backlog < 1 or max_closed_runs < 1:
            raise ValueError("max_backlog >= 1, max_closed_runs >= 1")
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._max_backlog = max_backlog
        self._subscribers: dict[Hashable, set[SubscriberQueue]] = {}
        self._closed: OrderedDict[Hashable, None] = OrderedDict()
        self._max_closed_runs = max_closed_runs

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop

    def subscribe(self, run_id: Hashable) -> SubscriberQueue:
        queue = SubscriberQueue(run_id, self._max_backlog)
        with self._lock:
            if run_id in self._closed:
                queue.end({"type": "done"})
            else:
                self._subscribers.setdefault(run_id, set()).add(queue)
        return queue

    def unsubscribe(self, run_id: Hashable, queue: SubscriberQueue) -> None:
        with self._lock:
            self._forget_locked(run_id, queue)

    def emit(self, run_id: Hashable, event: Event) -> None:
        if not isinstance(event, dict):
            raise TypeError(f"event must be a dict, not {type(event).__name__}")
        with self._lock:
            if run_id in self._closed:
                return
            for queue in self._subscribers.get(run_id, ()):
                self._post_locked(queue, event)

    def close(self, run_id: Hashable) -> None:
        with self._lock:
            if run_id in self._closed:
                return
            self._closed[run_id] = None
            if len(self._closed) > self._max_closed_runs:
                self._closed.popitem(last=False)
            for queue in self._subscribers.pop(run_id, ()):
                self._post_locked(queue, {"type": "done"})

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._lock:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._lock:
            return run_id in self._closed

    def _forget_locked(self, run_id: Hashable, queue: SubscriberQueue) -> None:
        subs = self._subscribers.get(run_id)
        if subs is None or queue not in subs:
            return
        subs.remove(queue)
        if not subs:
            del self._subscribers[run_id]

    def _post_locked(self, queue: SubscriberQueue, item: Event) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads the queues any more
            loop.call_soon_threadsafe(self._deliver, queue, item)

    def _deliver(self, queue: SubscriberQueue, item: Event) -> None:
        """On the loop: hand ``item`` to ``queue``, or cut the subscriber off."""
        if queue.ended:
            return
        if item.get("type") == "done":
            queue.end(item)
            return
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_event(item)
