"""The last unsubscribe (or the last done) leaves an empty subscriber dict in the map for the run.
Caught by: subscriber-map-cleanup
Also caught by: bounded-state

``_forget`` removes the queue from the run's dict but never deletes the emptied dict, so every
run ever subscribed to keeps an entry: a memory leak proportional to all runs. ``n_subscribers``
still says 0 (it is ``len()`` of the empty dict): only the internal map shows it.

No concurrency needed: subscribe(r); unsubscribe(r, q): ``_subscribers`` still has key r.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading as th
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

Event = dict[str, Any]


class EmptySetLeftBroker:
    """Lazily created per-run RLocks, done delivered (and the subscriber removed) on the loop."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        if max_closed_runs < 1:
            raise ValueError("max_closed_runs must be >= 1")
        self._registry = th.Lock()  # guards _locks and _closed
        self._locks: dict[Hashable, Any] = {}  # run id -> RLock
        self._closed: OrderedDict[Hashable, None] = OrderedDict()
        self._max_closed_runs = max_closed_runs
        # run id -> queues (dict as an ordered set); key r is guarded by r's lock.
        self._subscribers: dict[Hashable, dict[asyncio.Queue[Event], None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._registry:
            self._loop = loop

    def subscribe(self, run_id: Hashable) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        with self._run_lock(run_id):
            if self._is_closed(run_id):
                queue.put_nowait({"type": "done"})
                return queue
            self._subscribers.setdefault(run_id, {})[queue] = None
        return queue

    def unsubscribe(self, run_id: Hashable, queue: asyncio.Queue[Event]) -> None:
        with self._run_lock(run_id):
            self._forget(run_id, queue)

    def emit(self, run_id: Hashable, event: Event) -> None:
        if not isinstance(event, dict):
            raise TypeError(f"event must be a dict, not {type(event).__name__}")
        with self._run_lock(run_id):
            if self._is_closed(run_id):
                return
            for queue in self._subscribers.get(run_id, {}):
                self._post(queue.put_nowait, event)

    def close(self, run_id: Hashable) -> None:
        with self._run_lock(run_id):
            with self._registry:
                if run_id in self._closed:
                    return
                self._closed[run_id] = None
                while len(self._closed) > self._max_closed_runs:
                    old, _ = self._closed.popitem(last=False)
                    self._locks.pop(old, None)
            for queue in self._subscribers.get(run_id, {}):
                self._post(self._finisher(run_id), queue)

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._run_lock(run_id):
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        return self._is_closed(run_id)

    # -- internals -------------------------------------------------------------------------

    def _run_lock(self, run_id: Hashable) -> Any:
        with self._registry:
            lock = self._locks.get(run_id)
            if lock is None:
                lock = th.RLock()
                self._locks[run_id] = lock
            return lock

    def _is_closed(self, run_id: Hashable) -> bool:
        with self._registry:
            return run_id in self._closed

    def _forget(self, run_id: Hashable, queue: asyncio.Queue[Event]) -> None:
        """Drop ``queue`` from the run's subscribers; call with the run's lock held."""
        subs = self._subscribers.get(run_id)
        if subs is None or queue not in subs:
            return
        del subs[queue]

    def _finisher(self, run_id: Hashable) -> Callable[[asyncio.Queue[Event]], None]:
        def finish(queue: asyncio.Queue[Event]) -> None:  # runs on the loop
            with self._run_lock(run_id):
                self._forget(run_id, queue)
                queue.put_nowait({"type": "done"})

        return finish

    def _post(self, callback: Callable[[Any], None], arg: Any) -> None:
        """Schedule ``callback(arg)`` on the loop; call with the run's lock held."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads the queues any more
            loop.call_soon_threadsafe(callback, arg)
