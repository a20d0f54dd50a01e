"""The dispatcher waits on its Condition under ``if``, not ``while``: a wake-up with nothing
pending kills it.
Caught by: no-exception
Also caught by: no-lost-events, no-hang-after-done

A copy of ``correct_condition_dispatcher`` whose dispatcher checks ``if not self._pending``
before ``wait()`` and then takes an item without checking again. A notify is a hint: ``emit`` to
a run that nobody watches appends nothing and still notifies, and the dispatcher, woken,
``popleft``s an empty deque. ``IndexError`` ends the dispatcher thread, and every later
delivery waits for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Any

Event = dict[str, Any]
Queue = asyncio.Queue[Event]


class ConditionWaitIfBroker:
    """One Condition; the dispatcher waits under if and trusts every wake-up."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        if max_closed_runs < 1:
            raise ValueError("max_closed_runs must be >= 1")
        self._cond = threading.Condition()  # guards every attribute below
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: dict[Hashable, dict[Queue, None]] = {}  # dict as an ordered set
        self._closed: OrderedDict[Hashable, None] = OrderedDict()
        self._max_closed_runs = max_closed_runs
        self._pending: deque[tuple[Queue, Event]] = deque()
        self._dispatcher: threading.Thread | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._cond:
            self._loop = loop
            if self._dispatcher is None:
                self._dispatcher = threading.Thread(
                    target=self._dispatch, name="broker-dispatcher", daemon=True
                )
                self._dispatcher.start()

    def subscribe(self, run_id: Hashable) -> Queue:
        queue: Queue = asyncio.Queue()
        with self._cond:
            if run_id in self._closed:
                queue.put_nowait({"type": "done"})
            else:
                self._subscribers.setdefault(run_id, {})[queue] = None
        return queue

    def unsubscribe(self, run_id: Hashable, queue: Queue) -> None:
        with self._cond:
            subs = self._subscribers.get(run_id)
            if subs is None or queue not in subs:
                return
            del subs[queue]
            if not subs:
                del self._subscribers[run_id]

    def emit(self, run_id: Hashable, event: Event) -> None:
        if not isinstance(event, dict):
            raise TypeError(f"event must be a dict, not {type(event).__name__}")
        with self._cond:
            if run_id in self._closed:
                return
            for queue in self._subscribers.get(run_id, {}):
                self._pending.append((queue, event))
            self._cond.notify()

    def close(self, run_id: Hashable) -> None:
        with self._cond:
            if run_id in self._closed:
                return
            self._closed[run_id] = None
            if len(self._closed) > self._max_closed_runs:
                self._closed.popitem(last=False)
            for queue in self._subscribers.pop(run_id, {}):
                self._pending.append((queue, {"type": "done"}))
            self._cond.notify()

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._cond:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._cond:
            return run_id in self._closed

    def _dispatch(self) -> None:
        """The dispatcher thread: post each pending item to the loop, in order."""
        while True:
            with self._cond:
                if not self._pending:
                    self._cond.wait()
                queue, item = self._pending.popleft()
                loop = self._loop
                assert loop is not None  # the dispatcher starts in bind_loop
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads any more
                    loop.call_soon_threadsafe(queue.put_nowait, item)
