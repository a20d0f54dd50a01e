"""Subscribers are kept in WeakSets and unsubscribe is left to the garbage collector.
Caught by: subscriber-map-cleanup

A copy of ``correct_defaultdict_sets`` whose runs hold their queues in a ``weakref.WeakSet``, so
``unsubscribe`` does nothing: "the set forgets a queue as soon as the handler lets go of it".
It does forget the queue once nothing else references it, but the emptied WeakSet stays in the
map for ever, and while anything still holds the queue (a reconnecting client, a task's
traceback, a debugger) the subscriber is counted and sent every event.

Minimal interleaving: none needed. subscribe(r); unsubscribe while the queue is still referenced.
n_subscribers(r) stays 1; once the queue is collected the map keeps an empty WeakSet for r.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Hashable
from typing import Any

Event = dict[str, Any]
Queue = asyncio.Queue[Event]


class WeakSetUnsubscribeByGcBroker:
    """One lock; a defaultdict(set) subscriber map; close pops the run's entry."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        if max_closed_runs < 1:
            raise ValueError("max_closed_runs must be >= 1")
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: defaultdict[Hashable, weakref.WeakSet[Queue]] = defaultdict(
            weakref.WeakSet
        )
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
            else:
                self._subscribers[run_id].add(queue)
        return queue

    def unsubscribe(self, run_id: Hashable, queue: Queue) -> None:
        """Nothing to do: the run's WeakSet drops the queue when the handler lets go of it."""

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

    def _post_locked(self, queue: Queue, item: Event) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads the queues any more
            loop.call_soon_threadsafe(queue.put_nowait, item)
