"""Brokers that keep their subscribers in the shapes real brokers use, for the map discovery tests.

Each is correct: one lock around everything, deliveries by ``call_soon_threadsafe``, ``close``
hands done to every subscriber and drops the run's entry. They differ only in what a run's
entry in the subscriber map holds, one shape each:

* ``TupleListBroker``: a list of ``(loop, queue)`` tuples;
* ``DictOfDictsBroker``: a dict of subscriber number to queue, inside the map's dict;
* ``BoundMethodBroker``: the bound method ``queue.put_nowait``, stored as the callback;
* ``PartialBroker``: ``functools.partial(loop.call_soon_threadsafe, queue.put_nowait)``;
* ``HolderBroker``: a small per-subscriber object (``__slots__``) holding the queue;
* ``PropertyBroker``: a plain dict of queues, reachable only through a property (the broker
  holds it in a closure).

``...LeavesEntry`` is the same broker whose ``unsubscribe`` removes the subscriber but keeps the
emptied container in the map: ``n_subscribers`` is 0, and only the map shows the leak.
``UnmappedBroker`` keys its map by ``(run, number)``, which no discovery can tell from a run,
and ``UnmappedStaleCountBroker`` also forgets to lower its count on ``unsubscribe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import threading
from collections.abc import Callable, Hashable
from typing import Any

Event = dict[str, Any]
Queue = asyncio.Queue[Event]


class _MapBroker:
    """The seed API over ``self._map(run)``, a container of entries that ``_entry`` makes."""

    leaves_entry = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed: set[Hashable] = set()
        self._numbers = itertools.count(1)

    # How a run's entries are kept: overridden by each shape.
    def _runs(self) -> dict[Hashable, Any]:
        raise NotImplementedError

    def _add(self, run_id: Hashable, queue: Queue) -> None:
        raise NotImplementedError

    def _remove(self, run_id: Hashable, queue: Queue) -> None:
        raise NotImplementedError

    def _deliveries(self, run_id: Hashable) -> list[Callable[[Event], None]]:
        raise NotImplementedError

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop

    def subscribe(self, run_id: Hashable) -> Queue:
        queue: Queue = asyncio.Queue()
        with self._lock:
            if run_id in self._closed:
                queue.put_nowait({"type": "done"})
            else:
                self._add(run_id, queue)
        return queue

    def unsubscribe(self, run_id: Hashable, queue: Queue) -> None:
        with self._lock:
            if run_id in self._runs():
                self._remove(run_id, queue)
                if not self._runs()[run_id] and not self.leaves_entry:
                    del self._runs()[run_id]

    def emit(self, run_id: Hashable, event: Event) -> None:
        with self._lock:
            if run_id not in self._closed:
                for deliver in self._deliveries(run_id):
                    self._post(deliver, event)

    def close(self, run_id: Hashable) -> None:
        with self._lock:
            if run_id in self._closed:
                return
            self._closed.add(run_id)
            for deliver in self._deliveries(run_id):
                self._post(deliver, {"type": "done"})
            self._runs().pop(run_id, None)

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._lock:
            return len(self._runs().get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        with self._lock:
            return run_id in self._closed

    def _post(self, deliver: Callable[[Event], None], item: Event) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads any more
                self._loop.call_soon_threadsafe(deliver, item)


class TupleListBroker(_MapBroker):
    def __init__(self) -> None:
        super().__init__()
        self._subscribers: dict[Hashable, list[tuple[asyncio.AbstractEventLoop | None, Queue]]]
        self._subscribers = {}

    def _runs(self) -> dict[Hashable, Any]:
        return self._subscribers

    def _add(self, run_id: Hashable, queue: Queue) -> None:
        self._subscribers.setdefault(run_id, []).append((self._loop, queue))

    def _remove(self, run_id: Hashable, queue: Queue) -> None:
        entries = self._subscribers[run_id]
        entries[:] = [entry for entry in entries if entry[1] is not queue]

    def _deliveries(self, run_id: Hashable) -> list[Callable[[Event], None]]:
        return [queue.put_nowait for _, queue in self._subscribers.get(run_id, [])]


class DictOfDictsBroker(_MapBroker):
    def __init__(self) -> None:
        super().__init__()
        self._state: dict[str, dict[Hashable, dict[int, Queue]]] = {"subscribers": {}}

    def _runs(self) -> dict[Hashable, Any]:
        return self._state["subscribers"]

    def _add(self, run_id: Hashable, queue: Queue) -> None:
        self._runs().setdefault(run_id, {})[next(self._numbers)] = queue

    def _remove(self, run_id: Hashable, queue: Queue) -> None:
        entries = self._runs()[run_id]
        for number in [n for n, q in entries.items() if q is queue]:
            del entries[number]

    def _deliveries(self, run_id: Hashable) -> list[Callable[[Event], None]]:
        return [queue.put_nowait for queue in self._runs().get(run_id, {}).values()]


class BoundMethodBroker(_MapBroker):
    def __init__(self) -> None:
        super().__init__()
        self._callbacks: dict[Hashable, list[Callable[[Event], None]]] = {}

    def _runs(self) -> dict[Hashable, Any]:
        return self._callbacks

    def _add(self, run_id: Hashable, queue: Queue) -> None:
        self._callbacks.setdefault(run_id, []).append(queue.put_nowait)

    def _remove(self, run_id: Hashable, queue: Queue) -> None:
        self._callbacks[run_id].remove(queue.put_nowait)

    def _deliveries(self, run_id: Hashable) -> list[Callable[[Event], None]]:
        return list(self._callbacks.get(run_id, []))


class PartialBroker(_MapBroker):
    def __init__(self) -> None:
        super().__init__()
        self._senders: dict[Hashable, dict[int, functools.partial[Any]]] = {}
        self._queues: dict[int, int] = {}  # id of a queue -> its sender's number

    def _runs(self) -> dict[Hashable, Any]:
        return self._senders

    def _add(self, run_id: Hashable, queue: Queue) -> None:
        assert self._loop is not None
        number = next(self._numbers)
        self._queues[id(queue)] = number
        send = functools.partial(self._loop.call_soon_threadsafe, queue.put_nowait)
        self._senders.setdefault(run_id, {})[number] = send

    def _remove(self, run_id: Hashable, queue: Queue) -> None:
        self._senders[run_id].pop(self._queues.pop(id(queue), -1), None)

    def _deliveries(self, run_id: Hashable) -> list[Callable[[Event], None]]:
        return [send.args[0] for send in self._senders.get(run_id, {}).values()]


class _Subscriber:
    """One subscriber's record."""

    __slots__ = ("number", "queue")

    def __init__(self, number: int, queue: Queue) -> None:
        self.number = number
        self.queue = queue


class HolderBroker(_MapBroker):
    def __init__(self) -> None:
        super().__init__()
        self._subscribers: dict[Hashable, set[_Subscriber]] = {}

    def _runs(self) -> dict[Hashable, Any]:
        return self._subscribers

    def _add(self, run_id: Hashable, queue: Queue) -> None:
        self._subscribers.setdefault(run_id, set()).add(_Subscriber(next(self._numbers), queue))

    def _remove(self, run_id: Hashable, queue: Queue) -> None:
        holders = self._subscribers[run_id]
        holders.difference_update([h for h in holders if h.queue is queue])

    def _deliveries(self, run_id: Hashable) -> list[Callable[[Event], None]]:
        holders = sorted(self._subscribers.get(run_id, ()), key=lambda h: h.number)
        return [holder.queue.put_nowait for holder in holders]


def _store() -> Callable[[], dict[Hashable, dict[Queue, None]]]:
    subscribers: dict[Hashable, dict[Queue, None]] = {}
    return lambda: subscribers


class PropertyBroker(_MapBroker):
    def __init__(self) -> None:
        super().__init__()
        self._store = _store()

    @property
    def subscribers(self) -> dict[Hashable, dict[Queue, None]]:
        return self._store()

    def _runs(self) -> dict[Hashable, Any]:
        return self.subscribers

    def _add(self, run_id: Hashable, queue: Queue) -> None:
        self.subscribers.setdefault(run_id, {})[queue] = None

    def _remove(self, run_id: Hashable, queue: Queue) -> None:
        self.subscribers[run_id].pop(queue, None)

    def _deliveries(self, run_id: Hashable) -> list[Callable[[Event], None]]:
        return [queue.put_nowait for queue in self.subscribers.get(run_id, {})]


class TupleListBrokerLeavesEntry(TupleListBroker):
    leaves_entry = True


class DictOfDictsBrokerLeavesEntry(DictOfDictsBroker):
    leaves_entry = True


class BoundMethodBrokerLeavesEntry(BoundMethodBroker):
    leaves_entry = True


class PartialBrokerLeavesEntry(PartialBroker):
    leaves_entry = True


class HolderBrokerLeavesEntry(HolderBroker):
    leaves_entry = True


class PropertyBrokerLeavesEntry(PropertyBroker):
    leaves_entry = True


class UnmappedBroker(_MapBroker):
    def __init__(self) -> None:
        super().__init__()
        self._by_key: dict[tuple[Hashable, int], Queue] = {}
        self._counts: dict[Hashable, int] = {}

    def _runs(self) -> dict[Hashable, Any]:
        # Every run with a subscriber, to its subscribers: built fresh, never kept.
        runs: dict[Hashable, list[Queue]] = {}
        for (run_id, _), queue in self._by_key.items():
            runs.setdefault(run_id, []).append(queue)
        return runs

    def unsubscribe(self, run_id: Hashable, queue: Queue) -> None:
        with self._lock:
            self._remove(run_id, queue)

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._lock:
            return self._counts.get(run_id, 0)

    def close(self, run_id: Hashable) -> None:
        with self._lock:
            if run_id in self._closed:
                return
            self._closed.add(run_id)
            for deliver in self._deliveries(run_id):
                self._post(deliver, {"type": "done"})

    def _add(self, run_id: Hashable, queue: Queue) -> None:
        self._by_key[(run_id, next(self._numbers))] = queue
        self._counts[run_id] = self._counts.get(run_id, 0) + 1

    def _remove(self, run_id: Hashable, queue: Queue) -> None:
        for key in [k for k, q in self._by_key.items() if q is queue]:
            del self._by_key[key]
            self._counts[run_id] -= 1

    def _deliveries(self, run_id: Hashable) -> list[Callable[[Event], None]]:
        return [queue.put_nowait for queue in self._runs().get(run_id, [])]


class UnmappedStaleCountBroker(UnmappedBroker):
    def _remove(self, run_id: Hashable, queue: Queue) -> None:
        for key in [k for k, q in self._by_key.items() if q is queue]:
            del self._by_key[key]
