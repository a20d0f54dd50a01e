"""Event ids come from one itertools.count shared by every run, not a counter per run.
Caught by: order
Also caught by: replay-seam

A copy of ``correct_coroutine_replay`` that numbers events with ``next(self._ids)`` from a
single ``itertools.count(1)`` ("ids are unique across runs, which is handy in logs"). Each run's
ids still increase, and are still unique within the run, but they are no longer 1, 2, 3, ... per
run as the contract says: a run's ids have holes wherever another run emitted, a run forgotten
and started again does not start at 1, and the gap test (which assumes consecutive ids in the
buffer) then sends a spurious gap marker to a client that missed nothing.

Minimal interleaving: none needed. emit(r2); emit(r1). The only event of r1 has id 2; a
subscriber of r1 with ``last_event_id=0`` gets ``gap(after 0, from 2)`` first.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]
Queue = asyncio.Queue[Event]


@dataclass
class Subscription:
    """One subscriber of a run."""

    run_id: Hashable
    queue: Queue
    last_event_id: int | None = None
    finished: bool = field(default=False, compare=False)  # loop thread only


class _Run:
    __slots__ = ("buffer", "closed", "last_id")

    def __init__(self, replay_size: int) -> None:
        self.last_id = 0
        self.buffer: deque[Event] = deque(maxlen=replay_size)
        self.closed = False


class SharedIdCounterBroker:
    """Deliveries as coroutines on the loop; ids, replay with a gap marker, backlog cut-off."""

    def __init__(
        self,
        *,
        replay_size: int = 1024,
        max_backlog: int = 10_000,
        max_closed_runs: int = 10_000,
    ) -> None:
        if replay_size < 0 or max_backlog < 1 or max_closed_runs < 1:
            raise ValueError("replay_size >= 0, max_backlog >= 1, max_closed_runs >= 1")
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replay_size = replay_size
        self._max_backlog = max_backlog
        self._max_closed_runs = max_closed_runs
        self._runs: dict[Hashable, _Run] = {}
        self._closed: OrderedDict[Hashable, None] = OrderedDict()
        # run id -> live subscriptions, in subscription order; never an empty list.
        self._subscribers: dict[Hashable, list[Subscription]] = {}
        self.dropped_after_close = 0
        self._ids = itertools.count(1)

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop

    def subscribe(self, run_id: Hashable, last_event_id: int | None = None) -> Queue:
        if last_event_id is not None and (
            not isinstance(last_event_id, int) or isinstance(last_event_id, bool)
        ):
            raise TypeError("last_event_id must be an int or None")
        if last_event_id is not None and last_event_id < 0:
            raise ValueError("last_event_id must be >= 0")
        queue: Queue = asyncio.Queue()
        with self._lock:
            run = self._runs.get(run_id)
            if last_event_id is not None and run is not None:
                for item in self._replay_locked(run, last_event_id):
                    if queue.qsize() >= self._max_backlog:
                        queue.put_nowait(self._overflow_marker())
                        return queue
                    queue.put_nowait(item)
            if run is not None and run.closed:
                queue.put_nowait({"type": "done"})
                return queue
            subscription = Subscription(run_id, queue, last_event_id)
            self._subscribers.setdefault(run_id, []).append(subscription)
        return queue

    def unsubscribe(self, run_id: Hashable, queue: Queue) -> None:
        with self._lock:
            self._forget_locked(run_id, queue)

    def emit(self, run_id: Hashable, event: Event) -> None:
        if not isinstance(event, dict):
            raise TypeError(f"event must be a dict, not {type(event).__name__}")
        if "id" in event:
            raise ValueError('"id" is reserved: the broker numbers events')
        with self._lock:
            run = self._run_locked(run_id)
            if run.closed:
                self.dropped_after_close += 1
                return
            run.last_id = next(self._ids)
            item = {**event, "id": run.last_id}
            run.buffer.append(item)
            subs = self._subscribers.get(run_id)
            if subs:
                self._send_locked(tuple(subs), item)

    def close(self, run_id: Hashable) -> None:
        with self._lock:
            run = self._run_locked(run_id)
            if run.closed:
                return
            run.closed = True
            self._closed[run_id] = None
            while len(self._closed) > self._max_closed_runs:
                old, _ = self._closed.popitem(last=False)
                del self._runs[old]
            subs = self._subscribers.pop(run_id, None)
            if subs:
                self._send_locked(tuple(subs), {"type": "done"}, done=True)

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._lock:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._lock:
            run = self._runs.get(run_id)
            return run is not None and run.closed

    # -- producer side, lock held ----------------------------------------------------------

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

    def _send_locked(
        self, subs: tuple[Subscription, ...], item: Event, *, done: bool = False
    ) -> None:
        loop = self._loop
        if loop is None:
            return
        delivery = self._deliver(subs, item, done)
        try:
            asyncio.run_coroutine_threadsafe(delivery, loop)
        except RuntimeError:  # a closed loop: nobody reads the queues any more
            delivery.close()

    def _forget_locked(self, run_id: Hashable, queue: Queue) -> None:
        subs = self._subscribers.get(run_id)
        if subs is None:
            return
        for index, sub in enumerate(subs):
            if sub.queue is queue:
                sub.finished = True  # unsubscribe and cut-off both run on the loop
                del subs[index]
                if not subs:
                    del self._subscribers[run_id]
                return

    # -- loop side -------------------------------------------------------------------------

    async def _deliver(self, subs: tuple[Subscription, ...], item: Event, done: bool) -> None:
        for sub in subs:
            self._hand(sub, item, done)

    def _hand(self, sub: Subscription, item: Event, done: bool) -> None:
        if sub.finished:
            return
        if done:
            sub.finished = True
            sub.queue.put_nowait(item)
            return
        if sub.queue.qsize() >= self._max_backlog:
            sub.finished = True
            sub.queue.put_nowait(self._overflow_marker())
            with self._lock:
                self._forget_locked(sub.run_id, sub.queue)
            return
        sub.queue.put_nowait(item)

    def _overflow_marker(self) -> Event:
        return {"type": "overflow", "limit": self._max_backlog}
