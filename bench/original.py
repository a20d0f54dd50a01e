"""The original broker design, kept as the benchmark's reference point (not part of the package).

It reproduces, on purpose, the defects of the first version of the broker, and nothing else:

* one ``loop.call_soon_threadsafe`` (a self-pipe write and a loop wake-up) per event per
  subscriber, on the producer's thread;
* ``close`` schedules ``done`` before it marks the run done, so a subscriber arriving in between
  never gets ``done``;
* ``emit`` does not check whether the run is done (events after ``done``), and a second ``close``
  sends a second ``done``;
* the set of done runs is never pruned;
* ``emit`` after the loop closed raises ``RuntimeError`` in the producer thread;
* nothing is kept for a reconnecting subscriber.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable
from typing import Any


class OriginalBroker:
    """The seed API as first written: correct only when nothing races."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: dict[Hashable, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._done: set[Hashable] = set()

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self, run_id: Hashable) -> asyncio.Queue[dict[str, Any]]:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        if run_id in self._done:
            queue.put_nowait({"type": "done"})
            return queue
        with self._lock:
            self._subscribers.setdefault(run_id, set()).add(queue)
        return queue

    def unsubscribe(self, run_id: Hashable, queue: asyncio.Queue[dict[str, Any]]) -> None:
        with self._lock:
            queues = self._subscribers.get(run_id)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._subscribers[run_id]

    def emit(self, run_id: Hashable, event: dict[str, Any]) -> None:
        with self._lock:
            queues = list(self._subscribers.get(run_id, ()))
        for queue in queues:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(queue.put_nowait, event)

    def close(self, run_id: Hashable) -> None:
        self.emit(run_id, {"type": "done"})
        self._done.add(run_id)

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._lock:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        return run_id in self._done
