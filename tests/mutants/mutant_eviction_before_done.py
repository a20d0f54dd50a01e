"""close evicts the run's subscribers before its done was delivered: they never get done.
Caught by: no-hang-after-done

A copy of ``correct_time_retention`` whose ``close`` also pops the run's entry from the
subscriber map ("the run is over; forget its subscribers now, so n_subscribers drops at once"),
while the done it schedules is still waiting for the loop. ``_finish`` then finds no
subscriber to give it to. No interleaving is needed: subscribe, close, and the subscriber
waits for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

Event = dict[str, Any]
Queue = asyncio.Queue[Event]


class EvictionBeforeDoneBroker:
    """Closed runs kept for a time window; close forgets subscribers before done reaches them."""

    def __init__(
        self,
        *,
        retain_closed_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if retain_closed_seconds < 0:
            raise ValueError("retain_closed_seconds must be >= 0")
        self._retain = retain_closed_seconds
        self._clock = clock
        self._closed_lock = threading.Lock()  # taken first; guards _closed
        self._subs_lock = threading.Lock()  # taken second; guards _subscribers and _loop
        self._closed: OrderedDict[Hashable, float] = OrderedDict()
        self._subscribers: dict[Hashable, dict[Queue, None]] = {}  # dict as an ordered set
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._subs_lock:
            self._loop = loop

    def subscribe(self, run_id: Hashable) -> Queue:
        queue: Queue = asyncio.Queue()
        with self._closed_lock, self._subs_lock:
            if run_id in self._closed:
                queue.put_nowait({"type": "done"})
            else:
                self._subscribers.setdefault(run_id, {})[queue] = None
        return queue

    def unsubscribe(self, run_id: Hashable, queue: Queue) -> None:
        with self._subs_lock:
            subs = self._subscribers.get(run_id)
            if subs is None or queue not in subs:
                return
            del subs[queue]
            if not subs:
                del self._subscribers[run_id]

    def emit(self, run_id: Hashable, event: Event) -> None:
        if not isinstance(event, dict):
            raise TypeError(f"event must be a dict, not {type(event).__name__}")
        with self._closed_lock, self._subs_lock:
            if run_id in self._closed:
                return
            for queue in self._subscribers.get(run_id, {}):
                self._post_locked(queue.put_nowait, event)

    def close(self, run_id: Hashable) -> None:
        with self._closed_lock:
            now = self._clock()
            self._forget_expired_locked(now)
            if run_id in self._closed:
                return
            self._closed[run_id] = now
            with self._subs_lock:
                self._subscribers.pop(run_id, None)
                self._post_locked(self._finish, run_id)

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._subs_lock:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._closed_lock:
            return run_id in self._closed

    def _forget_expired_locked(self, now: float) -> None:
        """Forget the closed runs older than the window (``_closed_lock`` held)."""
        while self._closed:
            run_id, closed_at = next(iter(self._closed.items()))
            if now - closed_at <= self._retain:
                return
            del self._closed[run_id]

    def _post_locked(self, callback: Callable[[Any], None], argument: Any) -> None:
        """Schedule ``callback(argument)`` on the loop (``_subs_lock`` held: keeps FIFO order)."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads the queues any more
            loop.call_soon_threadsafe(callback, argument)

    def _finish(self, run_id: Hashable) -> None:
        """On the loop: done to every subscriber the run still has."""
        with self._subs_lock:
            subs = self._subscribers.pop(run_id, {})
        for queue in subs:
            queue.put_nowait({"type": "done"})
