"""close sends done straight to the loop, bypassing the dispatcher: done overtakes the events.
Caught by: no-lost-events
Also caught by: nothing-after-done, done-exactly-once-last

A copy of ``correct_dispatcher_thread`` whose ``close`` pops the run's subscribers and posts
their done with ``call_soon_threadsafe`` itself ("close is rare, no need to queue it"). The
events emitted before ``close`` may still be in the dispatcher's inbox: done reaches the loop
first, and when the dispatcher takes those events the run has no subscribers left to give them
to. They are lost, although each emit returned before ``close`` began.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue as sync_queue
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

Event = dict[str, Any]
Queue = asyncio.Queue[Event]
# (run id, item, last): ``last`` for done, after which the run has no subscribers.
Message = tuple[Hashable, Event, bool]


class _Dispatcher(threading.Thread):
    """The thread that takes the broker's messages and posts their deliveries to the loop."""

    def __init__(self, broker: CloseBypassesDispatcherBroker) -> None:
        super().__init__(name="broker-dispatcher", daemon=True)
        self._broker = broker

    def run(self) -> None:
        while True:
            self._broker._dispatch(self._broker._inbox.get())


class CloseBypassesDispatcherBroker:
    """One lock; a SimpleQueue dispatcher for events; close posts done itself."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        if max_closed_runs < 1:
            raise ValueError("max_closed_runs must be >= 1")
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: dict[Hashable, dict[Queue, None]] = {}  # dict as an ordered set
        self._closed: OrderedDict[Hashable, None] = OrderedDict()
        self._max_closed_runs = max_closed_runs
        self._inbox: sync_queue.SimpleQueue[Message] = sync_queue.SimpleQueue()
        self._dispatcher: _Dispatcher | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop

    def subscribe(self, run_id: Hashable) -> Queue:
        queue: Queue = asyncio.Queue()
        with self._lock:
            if run_id in self._closed:
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
        with self._lock:
            if run_id in self._closed:
                return
            self._send_locked((run_id, event, False))

    def close(self, run_id: Hashable) -> None:
        with self._lock:
            if run_id in self._closed:
                return
            self._closed[run_id] = None
            if len(self._closed) > self._max_closed_runs:
                self._closed.popitem(last=False)
            loop = self._loop
            for queue in self._subscribers.pop(run_id, {}):
                if loop is not None:
                    loop.call_soon_threadsafe(queue.put_nowait, {"type": "done"})

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._lock:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._lock:
            return run_id in self._closed

    def _send_locked(self, message: Message) -> None:
        """Queue ``message`` for the dispatcher, starting it first if needed (lock held)."""
        if self._dispatcher is None:
            self._dispatcher = _Dispatcher(self)
            self._dispatcher.start()
        self._inbox.put(message)

    def _dispatch(self, message: Message) -> None:
        """On the dispatcher thread: post the item to the run's subscribers of this moment."""
        run_id, item, last = message
        with self._lock:
            subs = self._subscribers.pop(run_id, {}) if last else self._subscribers.get(run_id, {})
            loop = self._loop
            if loop is None:
                return
            for queue in subs:
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads any more
                    loop.call_soon_threadsafe(queue.put_nowait, item)
