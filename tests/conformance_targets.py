"""Brokers correct by a contract of their own, for the conformance profile's tests
(``tests/test_conformance.py``), with one buggy variant of each.

Each is the zoo's ``GlobalLockBroker`` (one lock around everything, one ``call_soon_threadsafe``
per delivery, so the loop's callbacks run in the lock's order) with one more promise:

- ``KeepAliveBroker`` writes SSE comment lines besides the events: ``": connected"`` first to
  every subscriber, ``": keep-alive"`` to a run's subscribers after every second event emitted
  (a timer's beat, counted in events so that it is deterministic) and before ``done``.
  ``is_keep_alive`` is its predicate
  (``--broker-items=tests.conformance_targets:is_keep_alive``). ``TrailingKeepAliveBroker``
  writes the last keep-alive after ``done``; ``WrappedDoneBroker`` ends a stream with ``done`` as
  an SSE data line, not the marker.
- ``HistoryBroker`` gives every new subscriber the run's events so far, in emit order, before
  the live ones, also after ``close`` (``--broker-history=all``). ``HistoryFromSecondBroker``
  leaves the run's first event out of that history.

Each has a constructor of its own: ``GlobalLockBroker``'s lock is then made under a frame of this
module, which the suite traces, and so is a controlled lock (``stateful.primitives``); made from
the zoo's module alone, it would be a real one, and a thread blocked on it ends the example in a
``[watchdog]``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

from tests.mutants.correct_global_lock import Event, GlobalLockBroker

GREETING = ": connected"
KEEP_ALIVE = ": keep-alive"
DONE: Event = {"type": "done"}
WRAPPED_DONE = 'data: {"type": "done"}'

#: Not a predicate: ``--broker-items`` naming it is a usage error.
NOT_A_PREDICATE = KEEP_ALIVE


def is_keep_alive(item: Any) -> bool:
    """An SSE comment line: what ``KeepAliveBroker`` sends besides events and ``done``."""
    return isinstance(item, str) and item.startswith(":")


class KeepAliveBroker(GlobalLockBroker):
    """Greets each subscriber first, and sends a keep-alive to a run's subscribers after every
    ``keep_alive_every`` events emitted to any run, and before done."""

    def __init__(self, *, keep_alive_every: int = 2, max_closed_runs: int = 10_000) -> None:
        super().__init__(max_closed_runs=max_closed_runs)
        self._keep_alive_every = keep_alive_every
        self._emitted = 0

    def subscribe(self, run_id: Hashable) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        queue.put_nowait(GREETING)
        with self._lock:
            if run_id in self._closed:
                queue.put_nowait(DONE)
            else:
                self._subscribers.setdefault(run_id, {})[queue] = None
        return queue

    def emit(self, run_id: Hashable, event: Event) -> None:
        if not isinstance(event, dict):
            raise TypeError(f"event must be a dict, not {type(event).__name__}")
        with self._lock:
            if run_id in self._closed:
                return
            self._emitted += 1
            beat = self._emitted % self._keep_alive_every == 0
            for queue in self._subscribers.get(run_id, {}):
                self._post(queue.put_nowait, event)
                if beat:
                    self._post(queue.put_nowait, KEEP_ALIVE)

    def close(self, run_id: Hashable) -> None:
        with self._lock:
            if run_id in self._closed:
                return
            self._closed[run_id] = None
            if len(self._closed) > self._max_closed_runs:
                self._closed.popitem(last=False)
            for queue in self._subscribers.pop(run_id, {}):
                self._finish(queue)

    def _finish(self, queue: asyncio.Queue[Any]) -> None:
        """The last items of a subscriber's stream; called with the lock held."""
        self._post(queue.put_nowait, KEEP_ALIVE)
        self._post(queue.put_nowait, DONE)


class TrailingKeepAliveBroker(KeepAliveBroker):
    """Sends the closing keep-alive after done instead of before it."""

    def _finish(self, queue: asyncio.Queue[Any]) -> None:
        self._post(queue.put_nowait, DONE)
        self._post(queue.put_nowait, KEEP_ALIVE)


class WrappedDoneBroker(KeepAliveBroker):
    """Sends done as the SSE line that carries it, not as the marker."""

    def _finish(self, queue: asyncio.Queue[Any]) -> None:
        self._post(queue.put_nowait, KEEP_ALIVE)
        self._post(queue.put_nowait, WRAPPED_DONE)


class HistoryBroker(GlobalLockBroker):
    """Each run's events are kept until the run is forgotten; a new subscriber gets them first."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        super().__init__(max_closed_runs=max_closed_runs)
        # run id -> every event emitted to it, oldest first; forgotten with the closed run.
        self._history: dict[Hashable, list[Event]] = {}

    def subscribe(self, run_id: Hashable) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        with self._lock:
            # On the loop thread, under the lock: an event emitted after this snapshot is posted
            # to the queue by emit, after these.
            for event in self._replayed(self._history.get(run_id, [])):
                queue.put_nowait(event)
            if run_id in self._closed:
                queue.put_nowait(DONE)
            else:
                self._subscribers.setdefault(run_id, {})[queue] = None
        return queue

    def emit(self, run_id: Hashable, event: Event) -> None:
        if not isinstance(event, dict):
            raise TypeError(f"event must be a dict, not {type(event).__name__}")
        with self._lock:
            if run_id in self._closed:
                return
            self._history.setdefault(run_id, []).append(event)
            for queue in self._subscribers.get(run_id, {}):
                self._post(queue.put_nowait, event)

    def close(self, run_id: Hashable) -> None:
        with self._lock:
            if run_id in self._closed:
                return
            self._closed[run_id] = None
            if len(self._closed) > self._max_closed_runs:
                forgotten, _ = self._closed.popitem(last=False)
                self._history.pop(forgotten, None)
            for queue in self._subscribers.pop(run_id, {}):
                self._post(queue.put_nowait, DONE)

    def _replayed(self, events: list[Event]) -> list[Event]:
        """What a new subscriber gets of the run's history."""
        return events


class HistoryFromSecondBroker(HistoryBroker):
    """Replays the history from its second event, as if the first had been sent already."""

    def _replayed(self, events: list[Event]) -> list[Event]:
        return events[1:]


def is_anything(item: Any) -> bool:
    """Calls every item noise: the suite asks it only about items that are not events or
    markers, so events and ``done`` are checked all the same."""
    return True
