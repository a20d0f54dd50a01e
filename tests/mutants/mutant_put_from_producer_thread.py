"""emit and close call queue.put_nowait on the producer thread: a waiting consumer is not woken.
Caught by: no-lost-events
Also caught by: no-hang-after-done

A copy of ``correct_defaultdict_sets`` that puts into the subscribers' queues directly, on the
calling thread ("put_nowait never blocks, so it is safe anywhere"). ``asyncio.Queue`` is not
thread-safe: the item lands in the queue, but waking the consumer blocked in ``get()`` goes
through the loop's non-thread-safe ``call_soon``, which does not wake a loop that is waiting
for I/O. The consumer sleeps with the event (or done) in its queue until something else wakes
the loop.

Minimal interleaving: subscribe(r) and let the consumer block in ``get()``; emit(r) on a
producer. The loop stays idle; the consumer never reads the event.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Hashable
from typing import Any

Event = dict[str, Any]
Queue = asyncio.Queue[Event]


class PutFromProducerThreadBroker:
    """One lock; a defaultdict(set) subscriber map; close pops the run's entry."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        if max_closed_runs < 1:
            raise ValueError("max_closed_runs must be >= 1")
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: defaultdict[Hashable, set[Queue]] = defaultdict(set)
        self._closed: OrderedDict[Hashable, None] = OrderedDict()
        self._max_closed_runs = max_closed_runs

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop

    def subscribe(self, run_id: Hashable) -> Queue:
        queue: Queue = asyncio.Queue()
        with self._lock:
            if run_id in self._closed:
                queue.put_nowait({"type": "done"})
            else:
                self._subscribers[run_id].add(queue)
        return queue

    def unsubscribe(self, run_id: Hashable, queue: Queue) -> None:
        with self._lock:
            subs = self._subscribers.get(run_id)
            if subs is None or queue not in subs:
                return
            subs.remove(queue)
            if not subs:
                del self._subscribers[run_id]

    def emit(self, run_id: Hashable, event: Event) -> None:
        if not isinstance(event, dict):
            raise TypeError(f"event must be a dict, not {type(event).__name__}")
        with self._lock:
            if run_id in self._closed:
                return
            for queue in self._subscribers.get(run_id, ()):
                self._post_locked(queue, event)

    def close(self, run_id: Hashable) -> None:
        with self._lock:
            if run_id in self._closed:
                return
            self._closed[run_id] = None
            if len(self._closed) > self._max_closed_runs:
                self._closed.popitem(last=False)
            for queue in self._subscribers.pop(run_id, ()):
                self._post_locked(queue, {"type": "done"})

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._lock:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._lock:
            return run_id in self._closed

    def _post_locked(self, queue: Queue, item: Event) -> None:
        if self._loop is None:
            return
        queue.put_nowait(item)
