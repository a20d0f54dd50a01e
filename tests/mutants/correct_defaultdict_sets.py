"""Correct: subscribers in a defaultdict(set), read only with .get so no lookup creates an entry.

Seed API only. One ``threading.Lock`` guards the map and the closed runs, and every
``call_soon_threadsafe`` is made while holding it, so the loop's FIFO of callbacks is the lock's
linearization order: events emitted before ``close`` precede done, and an emit after ``close``
is dropped. The map is a ``defaultdict(set)``: only ``subscribe`` indexes it (creating the
run's set); every other access uses ``.get`` or ``.pop``, and the last ``unsubscribe`` deletes
the emptied set, so a run without subscribers has no entry. Within a run, subscribers are a
plain ``set`` of queues, iterated in hash (address) order: which subscriber is handed an event
first differs from run to run, and nothing in the contract depends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Hashable
from typing import Any

Event = dict[str, Any]
Queue = asyncio.Queue[Event]


class DefaultdictSetBroker:
    """One lock; a defaultdict(set) subscriber map; close pops the run's entry."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        if max_closed_runs < 1:
            raise ValueError("max_closed_runs must be >= 1")
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: defaultdict[Hashable, set[Queue]] = defaultdict(set)
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
        with self._lock:
            subs = self._subscribers.get(run_id)
            if subs is None or queue not in subs:
                return
            subs.remove(queue)
            if not subs:
                del self._subscribers[run_id]

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
