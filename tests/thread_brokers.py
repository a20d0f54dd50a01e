"""Brokers that own threads: a dispatcher thread, and a thread pool that delivers.

Both keep the seed API's contract (the zoo's ``GlobalLockBroker`` design: one lock around the
broker's state, a closed run's subscribers get ``done`` and leave the map at once, a bounded
set of closed runs), but neither calls ``call_soon_threadsafe`` from the producer: each hands
every delivery to a thread of its own, which the scheduler must run and trace like the
producers for the suite to see the races it brings.

``DispatcherBroker``
    producers put ``(queue, item)`` on a ``queue.SimpleQueue`` while holding the lock; one
    dispatcher thread, started in ``__init__``, takes them off in order and delivers each with
    ``loop.call_soon_threadsafe``. The inbox is FIFO and filled under the lock, so the loop
    gets the items in the lock's order, ``done`` after every event emitted before ``close``.
``ExecutorBroker``
    producers ``submit`` each delivery to a ``ThreadPoolExecutor`` of one worker while holding
    the lock: one worker runs them in the order they were submitted.

The scheduler's tests (``tests/test_scheduler_threads.py``) drive them; the zoo has brokers of
these designs, with mutants, for the kill matrix (``correct_dispatcher_thread``, which starts its
dispatcher lazily, and ``correct_executor_bridge``).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import OrderedDict
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Event = dict[str, Any]
Delivery = tuple["asyncio.Queue[Event]", Event]
DONE: Event = {"type": "done"}


class _LockedBroker:
    """The state and the lock both designs share; ``_post`` is how a delivery leaves."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        if max_closed_runs < 1:
            raise ValueError("max_closed_runs must be >= 1")
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        # run id -> queues, a dict used as an insertion-ordered set (deterministic iteration).
        self._subscribers: dict[Hashable, dict[asyncio.Queue[Event], None]] = {}
        self._closed: OrderedDict[Hashable, None] = OrderedDict()
        self._max_closed_runs = max_closed_runs

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop

    def subscribe(self, run_id: Hashable) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        with self._lock:
            if run_id in self._closed:
                queue.put_nowait(dict(DONE))
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
                self._post(queue, event)

    def close(self, run_id: Hashable) -> None:
        with self._lock:
            if run_id in self._closed:
                return
            self._closed[run_id] = None
            if len(self._closed) > self._max_closed_runs:
                self._closed.popitem(last=False)
            for queue in self._subscribers.pop(run_id, {}):
                self._post(queue, dict(DONE))

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._lock:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._lock:
            return run_id in self._closed

    def _post(self, queue: asyncio.Queue[Event], item: Event) -> None:
        raise NotImplementedError

    def _deliver(self, queue: asyncio.Queue[Event], item: Event) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads the queues any more
            loop.call_soon_threadsafe(queue.put_nowait, item)


class DispatcherBroker(_LockedBroker):
    """A dispatcher thread, started in ``__init__``, delivers what the producers queue."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        super().__init__(max_closed_runs=max_closed_runs)
        self._inbox: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        self._dispatcher = threading.Thread(target=self._dispatch, name="dispatcher", daemon=True)
        self._dispatcher.start()

    def _post(self, queue: asyncio.Queue[Event], item: Event) -> None:
        self._inbox.put((queue, item))  # called with the lock held: the inbox keeps its order

    def _dispatch(self) -> None:
        while True:
            queue, item = self._inbox.get()
            self._deliver(queue, item)


class ExecutorBroker(_LockedBroker):
    """A thread pool of one worker delivers, in the order of submission."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        super().__init__(max_closed_runs=max_closed_runs)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="delivery")

    def _post(self, queue: asyncio.Queue[Event], item: Event) -> None:
        self._executor.submit(self._deliver, queue, item)  # the lock held: submitted in order
