"""Correct: a one-worker ThreadPoolExecutor makes the fan-out, producers only submit.

Seed API only. Under ``self._lock``, ``emit`` and ``close`` take the run's subscribers of that
moment (``close`` pops them) and submit one job, ``_deliver(queues, item)``, to
``self._executor``; an emit after ``close`` submits nothing. A producer pays one ``submit``
whatever the number of subscribers. The executor has one worker and runs its jobs in the order
they were submitted, which is the lock's order, and the worker hands each item to the loop with
``call_soon_threadsafe``: every queue gets events before done, and nothing after it.

``subscribe`` registers under the lock, or, for a closed run, gets done at once and is never
registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Event = dict[str, Any]
Queue = asyncio.Queue[Event]


class ExecutorBridgeBroker:
    """One lock; each emit and close is one job for a single-worker ThreadPoolExecutor."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        if max_closed_runs < 1:
            raise ValueError("max_closed_runs must be >= 1")
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: dict[Hashable, dict[Queue, None]] = {}  # dict as an ordered set
        self._closed: OrderedDict[Hashable, None] = OrderedDict()
        self._max_closed_runs = max_closed_runs
        # One worker: jobs run one at a time, in the order they were submitted.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="broker-delivery")

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop

    def subscribe(self, run_id: Hashable) -> Queue:
        queue: Queue = asyncio.Queue()
        with self._lock:
            if run_id in self._closed:
                queue.put_nowait({"type": "done"})
            else:
                self._subscribers.setdefault(run_id, {})[queue] = None
        return queue

    def unsubscribe(self, run_id: Hashable, queue: Queue) -> None:
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
            self._submit_locked(tuple(self._subscribers.get(run_id, ())), event)

    def close(self, run_id: Hashable) -> None:
        with self._lock:
            if run_id in self._closed:
                return
            self._closed[run_id] = None
            if len(self._closed) > self._max_closed_runs:
                self._closed.popitem(last=False)
            self._submit_locked(tuple(self._subscribers.pop(run_id, ())), {"type": "done"})

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._lock:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._lock:
            return run_id in self._closed

    def _submit_locked(self, queues: tuple[Queue, ...], item: Event) -> None:
        """One delivery job (lock held: jobs are submitted in the lock's order)."""
        loop = self._loop
        if loop is None or not queues:
            return
        self._executor.submit(self._deliver, loop, queues, item)

    def _deliver(
        self, loop: asyncio.AbstractEventLoop, queues: tuple[Queue, ...], item: Event
    ) -> None:
        """On the executor's worker: hand ``item`` to each queue's loop."""
        for queue in queues:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads any more
                loop.call_soon_threadsafe(queue.put_nowait, item)
