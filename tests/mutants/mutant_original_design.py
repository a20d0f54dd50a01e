"""The original RunBroker, whole: late subscriber hangs, emit after close, double done, leaks.
Caught by: no-hang-after-done
Also caught by: nothing-after-done, done-exactly-once-last, order, bounded-state

The design the project started from (issue 2, "Why"), written the way it was: one
``call_soon_threadsafe`` per event per subscriber, subscribers kept until they unsubscribe, and a
``close`` that schedules done outside the lock and only afterwards records the run as done.

- A subscriber that subscribes between close's done being scheduled and the run being marked
  done is registered into a run nobody will send done to again: it hangs for ever.
  Minimal interleaving: close(r) schedules done and is preempted before its last ``with``;
  subscribe(r) on the loop; close resumes.
- ``emit`` never looks at ``_done``: an event emitted after close still reaches the subscribers
  (they stay registered until they read done and unsubscribe), queued after their done.
- ``close`` is not idempotent: a second close sends a second done.
- ``_done`` grows for ever, and ``emit`` after the loop is closed raises in the worker thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable
from typing import Any

Event = dict[str, Any]


class OriginalRunBroker:
    """Drop-in API of the original broker (``RunBroker`` in the old code base)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: dict[Hashable, dict[asyncio.Queue[Event], None]] = {}
        self._done: set[Hashable] = set()
        self._lock = threading.Lock()

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self, run_id: Hashable) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        with self._lock:
            if run_id in self._done:
                queue.put_nowait({"type": "done"})
                return queue
            self._subscribers.setdefault(run_id, {})[queue] = None
        return queue

    def unsubscribe(self, run_id: Hashable, queue: asyncio.Queue[Event]) -> None:
        with self._lock:
            subs = self._subscribers.get(run_id)
            if subs is None:
                return
            subs.pop(queue, None)
            if not subs:
                del self._subscribers[run_id]

    def emit(self, run_id: Hashable, event: Event) -> None:
        with self._lock:
            subs = list(self._subscribers.get(run_id, {}))
        for queue in subs:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(queue.put_nowait, event)

    def close(self, run_id: Hashable) -> None:
        with self._lock:
            subs = list(self._subscribers.get(run_id, {}))
        for queue in subs:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(queue.put_nowait, {"type": "done"})
        with self._lock:
            self._done.add(run_id)

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._lock:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        return run_id in self._done
