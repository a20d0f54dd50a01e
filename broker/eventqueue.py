"""``EventQueue``: the ``asyncio.Queue`` a subscriber reads, which also accepts whole batches.

What it promises: it is an ``asyncio.Queue`` (unbounded) and behaves as one item by item:
``qsize()``, ``empty()``, ``get()``, ``get_nowait()``, ``task_done()`` and ``join()`` all count
single items, also for items that arrived in a batch, and every ``get()`` waiter is woken while
items remain. :meth:`EventQueue.put_batch` appends a list of items in order with one call, so
the broker's fan-out costs one call per subscriber per batch instead of one per event, and
``get()`` takes a short path when an item is ready. It uses ``asyncio.Queue``'s subclass hooks
(``_put``/``_get``, as ``PriorityQueue`` does) and its long-standing ``_queue``/``_getters``/
``_unfinished_tasks`` bookkeeping. Not thread-safe, like any ``asyncio.Queue``: only the loop
thread touches it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from broker.events import Event


class _Batch(list[Event]):
    """A list of items that ``_put`` unpacks; a distinct type so no single item is mistaken
    for one."""

    __slots__ = ()


class EventQueue(asyncio.Queue[Event]):
    """An unbounded ``asyncio.Queue`` of event dicts that also takes batches (see the module)."""

    # Attributes of asyncio.Queue that typeshed leaves out.
    _queue: deque[Event]
    _getters: deque[asyncio.Future[None]]
    _unfinished_tasks: int
    _wakeup_next: Callable[[deque[asyncio.Future[None]]], None]

    def __init__(self) -> None:
        # Always unbounded (the broker enforces its own backlog limit), so no put() ever
        # waits and get() has no putter to wake: that is what makes get()'s short path valid.
        super().__init__()

    def put_batch(self, items: list[Event]) -> None:
        """Append ``items`` in order, as ``put_nowait`` of each would, in one call."""
        if items:
            # put_nowait does the shutdown/full checks, the task count and the first wake-up;
            # _put unpacks the batch.
            self.put_nowait(_Batch(items))  # type: ignore[arg-type]

    def _put(self, item: Event) -> None:
        if not isinstance(item, _Batch):
            self._queue.append(item)
            return
        self._queue.extend(item)
        # put_nowait counts the batch as one task; join() must wait for each item.
        self._unfinished_tasks += len(item) - 1

    async def get(self) -> Event:
        """Remove and return the next item, waiting while the queue is empty."""
        queue = self._queue
        if queue:
            # The common case of a reader behind a batch, inlined (it is _get below): the
            # empty() and get_nowait() calls of asyncio.Queue.get, or even one call to _get,
            # would cost as much as the rest of the read.
            item = queue.popleft()
            if queue and self._getters:
                self._wakeup_next(self._getters)
            return item
        return await super().get()

    def _get(self) -> Event:
        item = self._queue.popleft()
        # put_nowait wakes one getter per call, so after a batch the getter that takes an item
        # passes the wake-up on while items remain.
        if self._queue and self._getters:
            self._wakeup_next(self._getters)
        return item
