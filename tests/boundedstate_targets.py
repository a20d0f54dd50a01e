"""Small brokers for the bounded-state check's own tests (``tests/test_boundedstate.py``).

Each keeps the seed API's promises for runs served one call at a time, so the check gets as far
as measuring what it keeps, and each keeps what it remembers of closed runs in another place or
shape: a hard-coded number of runs, a time window on a clock it is given, a module-level list,
a log of tuples. ``RaisingCloseBroker`` fails at its first ``close``.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Any

Event = dict[str, Any]

#: How many closed runs ``FixedRetentionBroker`` remembers: a constant, not a parameter.
FIXED_RETENTION = 50

#: Every run ``GlobalLeakBroker`` ever closed.
SERVED_RUNS: list[Hashable] = []


class FixedRetentionBroker:
    """One lock; remembers the last ``FIXED_RETENTION`` closed runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: dict[Hashable, dict[asyncio.Queue[Event], None]] = {}
        self._closed: OrderedDict[Hashable, float] = OrderedDict()

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self, run_id: Hashable) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        with self._lock:
            if run_id in self._closed:
                queue.put_nowait({"type": "done"})
            else:
                self._subscribers.setdefault(run_id, {})[queue] = None
        return queue

    def unsubscribe(self, run_id: Hashable, queue: asyncio.Queue[Event]) -> None:
        with self._lock:
            subscribers = self._subscribers.get(run_id, {})
            subscribers.pop(queue, None)
            if not subscribers:
                self._subscribers.pop(run_id, None)

    def emit(self, run_id: Hashable, event: Event) -> None:
        with self._lock:
            if run_id not in self._closed:
                for queue in self._subscribers.get(run_id, {}):
                    self._post(queue.put_nowait, event)

    def close(self, run_id: Hashable) -> None:
        with self._lock:
            if run_id in self._closed:
                return
            self._closed[run_id] = self._now()
            self._forget_closed_runs()
            for queue in self._subscribers.pop(run_id, {}):
                self._post(queue.put_nowait, {"type": "done"})

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._lock:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._lock:
            return run_id in self._closed

    def _now(self) -> float:
        return 0.0

    def _forget_closed_runs(self) -> None:
        while len(self._closed) > FIXED_RETENTION:
            self._closed.popitem(last=False)

    def _post(self, callback: Callable[[Event], None], item: Event) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(callback, item)


class TimedRetentionBroker(FixedRetentionBroker):
    """Remembers the runs closed within the last ``retain_closed_seconds`` of ``clock``."""

    def __init__(self, *, retain_closed_seconds: float, clock: Callable[[], float]) -> None:
        super().__init__()
        self._retain_seconds = retain_closed_seconds
        self._clock = clock

    def _now(self) -> float:
        return self._clock()

    def _forget_closed_runs(self) -> None:
        now = self._clock()
        while self._closed and now - next(iter(self._closed.values())) > self._retain_seconds:
            self._closed.popitem(last=False)


class GlobalLeakBroker(FixedRetentionBroker):
    """Also records every closed run in the module-level ``SERVED_RUNS``."""

    def close(self, run_id: Hashable) -> None:
        SERVED_RUNS.append(run_id)
        super().close(run_id)


class TupleLogBroker(FixedRetentionBroker):
    """Also logs every close as a ``(run id, time)`` tuple in a deque without a bound."""

    def __init__(self) -> None:
        super().__init__()
        self._log: deque[tuple[Hashable, float]] = deque()

    def close(self, run_id: Hashable) -> None:
        self._log.append((run_id, self._now()))
        super().close(run_id)


class RaisingCloseBroker(FixedRetentionBroker):
    """Its ``close`` raises."""

    def close(self, run_id: Hashable) -> None:
        raise RuntimeError(f"cannot close {run_id!r}")
