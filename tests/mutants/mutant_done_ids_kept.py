"""``is_done`` answers from a set of every run ever closed, which nothing ever shrinks.
Caught by: bounded-state

A copy of ``correct_global_lock`` whose ``close`` also adds the run id to ``self._done_ids``, "so
that is_done stays True after the bounded record of closed runs forgets a run". The bounded
record keeps ``max_closed_runs`` runs as before, but the set grows by one id per run for ever:
the original design's leak (its ``_done`` set), reintroduced beside a correct retention. Every
delivery is right, so only the broker's size shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

Event = dict[str, Any]


class DoneIdsKeptBroker:
    """One lock; is_done answers from a set of every run ever closed."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        if max_closed_runs < 1:
            raise ValueError("max_closed_runs must be >= 1")
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        # run id -> queues, a dict used as an insertion-ordered set (deterministic iteration).
        self._subscribers: dict[Hashable, dict[asyncio.Queue[Event], None]] = {}
        # closed run ids, oldest first; bounded by max_closed_runs.
        self._closed: OrderedDict[Hashable, None] = OrderedDict()
        self._max_closed_runs = max_closed_runs
        # Every run ever closed, so that is_done stays True after the record forgets a run.
        self._done_ids: set[Hashable] = set()

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop

    def subscribe(self, run_id: Hashable) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        with self._lock:
            if run_id in self._closed:
                queue.put_nowait({"type": "done"})
            else:
                self._subscribers.setdefault(run_id, {})[queue] = None
        return queue

    def unsubscribe(self, run_id: Hashable, queue: asyncio.Queue[Event]) -> None:
        with self._lock:
            subs = self._subscribers.get(run_id)
            if subs is None or queue not in subs:
                return
            del subs[queue]
            if not subs:
                del self._subscribers[run_id]

    def emit(self, run_id: Hashable, event: Event) -> None:
        if not isinstance(event, dict):
            raise TypeError(f"event must be a dict, not {type(event).__name__}")
        with self._lock:
            if run_id in self._closed:
                return
            for queue in self._subscribers.get(run_id, {}):
                self._post(queue.put_nowait, event)

    def close(self, run_id: Hashable) -> None:
        with self._lock:
            if run_id in self._closed:
                return
            self._closed[run_id] = None
            self._done_ids.add(run_id)
            if len(self._closed) > self._max_closed_runs:
                self._closed.popitem(last=False)
            for queue in self._subscribers.pop(run_id, {}):
                self._post(queue.put_nowait, {"type": "done"})

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._lock:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._lock:
            return run_id in self._done_ids

    def _post(self, callback: Callable[[Event], None], item: Event) -> None:
        """Schedule ``callback(item)`` on the loop; call with the lock held (keeps FIFO order)."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads the queues any more
            loop.call_soon_threadsafe(callback, item)
