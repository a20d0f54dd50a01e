"""Correct: an actor task on the loop owns the subscribers and makes every delivery.

Seed API only. Producers never touch a subscriber: ``emit`` and ``close`` send the actor a
message, ``loop.call_soon_threadsafe(self._inbox.put_nowait, message)``, and the actor task
(started by ``bind_loop``) takes the messages in order and puts events and done into the
queues. The subscriber map is the loop thread's alone: the actor, ``subscribe`` and
``unsubscribe`` run there.

What a producer must know at once lives in ``self._closed`` under ``self._lock``: ``close``
records the run there and sends its message in one critical section, and ``emit`` checks it and
sends its message in one, so the inbox order is the lock's order: events emitted before
``close`` reach the actor before its close message, and an emit after ``close`` sends nothing.
``subscribe`` asks the same record, so a subscriber that arrives after ``close`` gets done at
once and is never registered; one that registered earlier gets done from the actor.
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


class ActorTaskBroker:
    """One loop-side actor task, fed by call_soon_threadsafe, delivers everything."""

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
            loop.call_soon_threadsafe(self._inbox.put_nowait, message)

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
