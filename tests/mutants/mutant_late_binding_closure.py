"""The delivery loop schedules a lambda that reads the loop variable late: every callback of one
emit puts into the LAST subscriber's queue.
Caught by: no-lost-events
Also caught by: no-duplicates, done-exactly-once-last, no-hang-after-done, nothing-after-done, order

A copy of ``correct_rlock_reentry`` whose ``_post_locked`` schedules
``lambda: queue.put_nowait(item)`` in its ``for queue in queues`` loop. The lambda looks
``queue`` up when the loop runs it, after the ``for`` loop has finished, so every callback sees
the last queue: with two subscribers of a run, the second gets each event (and done) twice and
the first gets nothing. One subscriber hides it; no interleaving is needed.
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


class LateBindingClosureBroker:
    """One re-entered RLock; the delivery loop's lambda binds its queue late."""

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
                loop.call_soon_threadsafe(lambda: queue.put_nowait(item))  # noqa: B023
