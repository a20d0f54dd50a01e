"""Correct: a dispatcher thread waits on a ``threading.Condition`` for a deque of deliveries.

Seed API only. ``self._cond`` is the broker's one lock. Under it, ``emit`` and ``close`` append
a ``(queue, item)`` pair to ``self._pending`` for each subscriber of the run (``close`` pops
them, with done), then ``notify()`` the dispatcher; an emit after ``close`` appends nothing. The
dispatcher thread, started by ``bind_loop``, waits while there is nothing pending, re-checking
after every wake-up (``while``, not ``if``: a notify is a hint, not a promise, and an emit to a
run nobody watches notifies too), and the check and the wait are one critical section, so no
notify is lost. It takes one pair at a time and posts it with ``call_soon_threadsafe`` without
releasing the Condition in between, so the loop gets the items in the order they were
appended: events before done, nothing after it.

``subscribe`` registers under the Condition, or, for a closed run, gets done at once and is
never registered.
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


class ConditionDispatcherBroker:
    """One Condition; a deque of deliveries drained by a dispatcher thread that waits on it."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        if max_closed_runs < 1:
            raise ValueError("max_closed_runs must be >= 1")
        self._cond = threading.Condition()  # guards every attribute below
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: dict[Hashable, dict[Queue, None]] = {}  # dict as an ordered set
        self._closed: OrderedDict[Hashable, None] = OrderedDict()
        self._max_closed_runs = max_closed_runs
        self._pending: deque[tuple[Queue, Event]] = deque()
        self._dispatcher: threading.Thread | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._cond:
            self._loop = loop
            if self._dispatcher is None:
                self._dispatcher = threading.Thread(
                    target=self._dispatch, name="broker-dispatcher", daemon=True
                )
                self._dispatcher.start()

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
                self._pending.append((queue, event))
            self._cond.notify()

    def close(self, run_id: Hashable) -> None:
        with self._cond:
            if run_id in self._closed:
                return
            self._closed[run_id] = None
            if len(self._closed) > self._max_closed_runs:
                self._closed.popitem(last=False)
            for queue in self._subscribers.pop(run_id, {}):
                self._pending.append((queue, {"type": "done"}))
            self._cond.notify()

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._cond:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._cond:
            return run_id in self._closed

    def _dispatch(self) -> None:
        """The dispatcher thread: post each pending item to the loop, in order."""
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                queue, item = self._pending.popleft()
                loop = self._loop
                assert loop is not None  # the dispatcher starts in bind_loop
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads any more
                    loop.call_soon_threadsafe(queue.put_nowait, item)
