"""Every ``call_soon_threadsafe`` handle is kept, also once it has run, for a ``shutdown()``.
Caught by: bounded-state

A copy of ``correct_global_lock`` whose ``_post`` appends each handle to ``self._handles``. The
handles that have run are never dropped, and each holds the queue and the item it delivered, so
the broker keeps every subscriber's queue and every event of every run it ever served. No run id
is kept with them (a handle is the event loop's object), so only the memory the broker keeps
allocated shows the leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

Event = dict[str, Any]


class HandlesKeptBroker:
    """One lock; every call_soon_threadsafe handle is kept, to be cancelled by shutdown."""

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
        # Every delivery scheduled on the loop, so that shutdown() can cancel what has not run.
        self._handles: list[asyncio.Handle] = []

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
            if len(self._closed) > self._max_closed_runs:
                self._closed.popitem(last=False)
            for queue in self._subscribers.pop(run_id, {}):
                self._post(queue.put_nowait, {"type": "done"})

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._lock:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._lock:
            return run_id in self._closed

    def _post(self, callback: Callable[[Event], None], item: Event) -> None:
        """Schedule ``callback(item)`` on the loop; call with the lock held (keeps FIFO order)."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads the queues any more
            self._handles.append(loop.call_soon_threadsafe(callback, item))

    def shutdown(self) -> None:
        """Cancel the deliveries the loop has not run yet."""
        with self._lock:
            for handle in self._handles:
                handle.cancel()
            self._handles.clear()
