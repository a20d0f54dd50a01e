"""Producers send the actor its messages with loop.call_soon, which is not thread-safe.
Caught by: no-lost-events
Also caught by: no-hang-after-done

A copy of ``correct_actor_task`` whose ``_send_locked`` calls ``loop.call_soon`` from the
producer thread ("the loop is running, call_soon is enough"). ``call_soon`` appends the callback
to the loop's ready queue but, unlike ``call_soon_threadsafe``, does not wake a loop that is
waiting for I/O: the message sits there until something else wakes the loop, and a subscriber
waiting for the event or for done waits with it. A loop in debug mode refuses the call outright
(``RuntimeError``: a non-thread-safe operation from another thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

Event = dict[str, Any]
Queue = asyncio.Queue[Event]
# (run id, item, last): ``last`` for done, after which the run has no subscribers.
Message = tuple[Hashable, Event, bool]


class CallSoonFromProducerBroker:
    """One loop-side actor task, fed by call_soon from the producer threads."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        if max_closed_runs < 1:
            raise ValueError("max_closed_runs must be >= 1")
        self._lock = threading.Lock()  # guards _closed and _loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed: OrderedDict[Hashable, None] = OrderedDict()
        self._max_closed_runs = max_closed_runs
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._actor: asyncio.Task[None] | None = None  # the loop keeps only a weak reference
        # Loop thread only: run id -> queues (dict as an ordered set), never an empty dict.
        self._subscribers: dict[Hashable, dict[Queue, None]] = {}

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop
        loop.call_soon_threadsafe(self._start)

    def subscribe(self, run_id: Hashable) -> Queue:
        queue: Queue = asyncio.Queue()
        with self._lock:
            if run_id in self._closed:
                queue.put_nowait({"type": "done"})
                return queue
        self._subscribers.setdefault(run_id, {})[queue] = None
        return queue

    def unsubscribe(self, run_id: Hashable, queue: Queue) -> None:
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
            self._send_locked((run_id, event, False))

    def close(self, run_id: Hashable) -> None:
        with self._lock:
            if run_id in self._closed:
                return
            self._closed[run_id] = None
            if len(self._closed) > self._max_closed_runs:
                self._closed.popitem(last=False)
            self._send_locked((run_id, {"type": "done"}, True))

    def n_subscribers(self, run_id: Hashable) -> int:
        return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._lock:
            return run_id in self._closed

    def _send_locked(self, message: Message) -> None:
        """Send the actor ``message`` (lock held: the inbox keeps the lock's order)."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads the queues any more
            loop.call_soon(self._inbox.put_nowait, message)

    # -- loop side -------------------------------------------------------------------------

    def _start(self) -> None:
        assert self._loop is not None
        self._actor = self._loop.create_task(self._act())

    async def _act(self) -> None:
        while True:
            run_id, item, last = await self._inbox.get()
            subs = self._subscribers.pop(run_id, {}) if last else self._subscribers.get(run_id, {})
            for queue in subs:
                queue.put_nowait(item)
