"""close sends done with its own call_soon_threadsafe, so done can overtake events in a batch.
Caught by: done-exactly-once-last
Also caught by: nothing-after-done, no-lost-events, overflow-marker

"done needs no batching": ``close`` schedules ``queue.put_nowait(done)`` directly for each
subscriber instead of sending it behind the subscriber's pending events. When a flush is already
running, events queued meanwhile wait for the flush to re-arm itself with ``call_soon``, which
lands behind the done callback: done arrives first and the events after it.

Minimal interleaving: subscribe(r); emit(r) schedules a flush; the flush takes the batch and is
preempted before re-arming; emit(r) (pending, no new wake-up) and close(r) (done scheduled)
run on a producer; the flush re-arms behind done. The subscriber gets done, then the event.
"""

from __future__ import annotations

import asyncio
import threading as th
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Any

Event = dict[str, Any]


class _Run:
    __slots__ = ("buffer", "closed", "last_id")

    def __init__(self, replay_size: int) -> None:
        self.last_id = 0
        self.buffer: deque[Event] = deque(maxlen=replay_size)
        self.closed = False


class _Sub:
    __slots__ = ("closing", "dirty", "finished", "pending", "queue", "run_id")

    def __init__(self, run_id: Hashable, queue: asyncio.Queue[Event]) -> None:
        self.run_id = run_id
        self.queue = queue
        self.pending: list[Event] = []  # guarded by the broker lock
        self.dirty = False  # guarded by the broker lock: in broker._dirty
        self.closing = False  # guarded by the broker lock: done is due after pending
        self.finished = False  # loop thread only: got done/overflow or unsubscribed


class DoneOvertakesBatchBroker:
    """Coalescing batch drain with ids, replay buffer, gap marker and slow-consumer cut-off."""

    def __init__(
        self,
        *,
        replay_size: int = 1024,
        max_backlog: int = 10_000,
        max_closed_runs: int = 10_000,
    ) -> None:
        if replay_size < 0 or max_backlog < 1 or max_closed_runs < 1:
            raise ValueError("replay_size >= 0, max_backlog >= 1, max_closed_runs >= 1")
        self._lock = th.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replay_size = replay_size
        self._max_backlog = max_backlog
        self._max_closed_runs = max_closed_runs
        self._runs: dict[Hashable, _Run] = {}
        self._closed: OrderedDict[Hashable, None] = OrderedDict()
        # run id -> {queue: subscriber}; only live subscribers, never an empty dict.
        self._subscribers: dict[Hashable, dict[asyncio.Queue[Event], _Sub]] = {}
        self._dirty: list[_Sub] = []
        self._scheduled = False
        self.dropped_after_close = 0

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop
            if self._dirty and not self._scheduled:
                self._schedule_locked()

    def subscribe(self, run_id: Hashable, last_event_id: int | None = None) -> asyncio.Queue[Event]:
        if last_event_id is not None and (
            not isinstance(last_event_id, int) or isinstance(last_event_id, bool)
        ):
            raise TypeError("last_event_id must be an int or None")
        if last_event_id is not None and last_event_id < 0:
            raise ValueError("last_event_id must be >= 0")
        queue: asyncio.Queue[Event] = asyncio.Queue()
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
            self._subscribers.setdefault(run_id, {})[queue] = _Sub(run_id, queue)
        return queue

    def unsubscribe(self, run_id: Hashable, queue: asyncio.Queue[Event]) -> None:
        with self._lock:
            subs = self._subscribers.get(run_id)
            if subs is None:
                return
            sub = subs.pop(queue, None)
            if sub is None:
                return
            if not subs:
                del self._subscribers[run_id]
        sub.finished = True  # called on the loop: a running flush skips what is left

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
            run.last_id += 1
            item = {**event, "id": run.last_id}
            run.buffer.append(item)
            for sub in self._subscribers.get(run_id, {}).values():
                sub.pending.append(item)
                self._mark_dirty_locked(sub)

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
            for sub in self._subscribers.pop(run_id, {}).values():
                if self._loop is None:
                    continue
                try:
                    self._loop.call_soon_threadsafe(sub.queue.put_nowait, {"type": "done"})
                except RuntimeError:
                    continue

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

    def _mark_dirty_locked(self, sub: _Sub) -> None:
        if not sub.dirty:
            sub.dirty = True
            self._dirty.append(sub)
        if not self._scheduled:
            self._schedule_locked()

    def _schedule_locked(self) -> None:
        loop = self._loop
        if loop is None:
            return  # bind_loop schedules the flush
        try:
            loop.call_soon_threadsafe(self._flush)
        except RuntimeError:  # the loop is closed: nobody can read the queues any more
            return
        self._scheduled = True

    # -- loop side -------------------------------------------------------------------------

    def _flush(self) -> None:
        with self._lock:
            work = [(sub, sub.pending, sub.closing) for sub in self._dirty]
            for sub in self._dirty:
                sub.pending = []
                sub.dirty = False
            self._dirty = []
        for sub, items, closing in work:
            for item in items:
                if sub.finished:
                    break
                if sub.queue.qsize() >= self._max_backlog:
                    self._cut_off(sub)
                    break
                sub.queue.put_nowait(item)
            if closing and not sub.finished:
                sub.finished = True
                sub.queue.put_nowait({"type": "done"})
        with self._lock:
            if self._dirty and self._loop is not None:
                self._loop.call_soon(self._flush)
            else:
                self._scheduled = False

    def _cut_off(self, sub: _Sub) -> None:
        """Terminate a subscriber whose backlog is full and forget it. Loop thread, no lock."""
        sub.finished = True
        sub.queue.put_nowait(self._overflow_marker())
        with self._lock:
            subs = self._subscribers.get(sub.run_id)
            if subs is not None and subs.get(sub.queue) is sub:
                del subs[sub.queue]
                if not subs:
                    del self._subscribers[sub.run_id]

    def _overflow_marker(self) -> Event:
        return {"type": "overflow", "limit": self._max_backlog}
