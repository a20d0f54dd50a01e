"""Correct: one RLock that the public methods re-enter, event ids and a replay buffer.

``subscribe``, ``emit`` and ``close`` ask ``self.is_done(run_id)`` while they hold
``self._lock``, and ``is_done`` takes the lock itself: a ``threading.RLock`` lets the holder take
it again, so the question and the action that depends on it are one critical section (with a
plain ``Lock`` the broker would deadlock on itself). Every ``call_soon_threadsafe`` is made under
the lock, so the loop's FIFO is the lock's order: events before done, nothing after it.

Each run numbers its events (``"id"`` 1, 2, ...) and keeps the last ``replay_size`` of them.
``subscribe(run_id, last_event_id=N)`` puts the buffered events after ``N`` into the new queue
and registers it in the same critical section, so the seam with live events has no hole and no
duplicate; a ``gap`` marker comes first when the buffer no longer reaches back to ``N + 1``.
``close`` pops the run's subscribers and sends each done; the run's record (ids, buffer, closed
flag) is kept for the last ``max_closed_runs`` closed runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable
from typing import Any

Event = dict[str, Any]
Queue = asyncio.Queue[Event]


class _Run:
    __slots__ = ("buffer", "closed", "last_id")

    def __init__(self, replay_size: int) -> None:
        self.last_id = 0
        self.buffer: deque[Event] = deque(maxlen=replay_size)
        self.closed = False


class RLockReentryBroker:
    """One re-entered RLock; per-run ids and replay buffer; close pops the subscriber entry."""

    def __init__(self, *, replay_size: int = 1024, max_closed_runs: int = 10_000) -> None:
        if replay_size < 0 or max_closed_runs < 1:
            raise ValueError("replay_size >= 0, max_closed_runs >= 1")
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replay_size = replay_size
        self._max_closed_runs = max_closed_runs
        self._runs: dict[Hashable, _Run] = {}  # runs that have had an emit or a close
        self._closed: OrderedDict[Hashable, None] = OrderedDict()
        self._subscribers: dict[Hashable, dict[Queue, None]] = {}  # dict as an ordered set

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop

    def subscribe(self, run_id: Hashable, last_event_id: int | None = None) -> Queue:
        queue: Queue = asyncio.Queue()
        with self._lock:
            run = self._runs.get(run_id)
            if last_event_id is not None and run is not None:
                for item in self._replay_locked(run, last_event_id):
                    queue.put_nowait(item)
            if self.is_done(run_id):
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
        if "id" in event:
            raise ValueError('"id" is reserved: the broker numbers events')
        with self._lock:
            if self.is_done(run_id):
                return
            run = self._run_locked(run_id)
            run.last_id += 1
            item = {**event, "id": run.last_id}
            run.buffer.append(item)
            self._post_locked(self._subscribers.get(run_id, {}), item)

    def close(self, run_id: Hashable) -> None:
        with self._lock:
            if self.is_done(run_id):
                return
            self._run_locked(run_id).closed = True
            self._closed[run_id] = None
            while len(self._closed) > self._max_closed_runs:
                old, _ = self._closed.popitem(last=False)
                del self._runs[old]
            self._post_locked(self._subscribers.pop(run_id, {}), {"type": "done"})

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._lock:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._lock:
            run = self._runs.get(run_id)
            return run is not None and run.closed

    # -- lock held -------------------------------------------------------------------------

    def _run_locked(self, run_id: Hashable) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = _Run(self._replay_size)
        return run

    def _replay_locked(self, run: _Run, last_event_id: int) -> list[Event]:
        first = run.buffer[0]["id"] if run.buffer else run.last_id + 1
        if last_event_id + 1 < first:
            gap = {"type": "gap", "last_event_id": last_event_id, "first_available_id": first}
            return [gap, *run.buffer]
        return [item for item in run.buffer if item["id"] > last_event_id]

    def _post_locked(self, queues: Iterable[Queue], item: Event) -> None:
        loop = self._loop
        if loop is None:
            return
        for queue in queues:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads any more
                loop.call_soon_threadsafe(queue.put_nowait, item)
