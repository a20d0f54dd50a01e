"""``Subscription``: ``async with broker.subscription(run_id) as sub: async for item in sub: ...``

What it promises: entering subscribes (on the running loop, with the optional ``last_event_id``
replay); iterating yields every item the queue yields, markers included (a leading gap marker,
then events, then the terminal ``done`` or ``overflow``), and stops after the terminal item;
leaving the block unsubscribes, whether it ends normally, by an exception or by cancellation.
Unsubscribing after the broker already let go (done or overflow delivered) is a no-op.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from broker.events import Event, is_terminal

if TYPE_CHECKING:
    from broker.eventqueue import EventQueue


class _Broker(Protocol):
    """What a subscription needs of its broker: ``RunBroker`` and ``RedisRunBroker`` have it."""

    def subscribe(self, run_id: Any, last_event_id: int | None = None) -> EventQueue: ...
    def unsubscribe(self, run_id: Any, queue: asyncio.Queue[Event]) -> None: ...


class Subscription:
    """One subscriber of one run, as an async context manager and an async iterator."""

    def __init__(self, broker: _Broker, run_id: Hashable, last_event_id: int | None) -> None:
        self.run_id = run_id
        self.last_event_id = last_event_id
        self._broker = broker
        self._queue: EventQueue | None = None
        self._finished = False

    @property
    def queue(self) -> EventQueue:
        """The subscriber queue; exists between entering and leaving the ``async with`` block."""
        if self._queue is None:
            raise RuntimeError("the subscription is not active: use it in 'async with'")
        return self._queue

    async def __aenter__(self) -> Subscription:
        if self._queue is not None:
            raise RuntimeError("a Subscription can be entered only once")
        self._queue = self._broker.subscribe(self.run_id, last_event_id=self.last_event_id)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finished = True
        self._broker.unsubscribe(self.run_id, self.queue)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self._finished:
            raise StopAsyncIteration
        item = await self.queue.get()
        if is_terminal(item):
            self._finished = True
        return item
