"""Slow consumers: the backlog limit, the overflow marker, and producers that never block.

A subscriber is cut off when its own queue holds ``max_backlog`` items it has not read and one
more is due; what the loop took in one flush beyond that waits in the broker until the next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from broker import RunBroker
from tests.broker_support import drain, in_thread, loop_step


def emit_in_thread(broker: RunBroker, run_id: str, count: int) -> None:
    def emit_all() -> None:
        for n in range(count):
            broker.emit(run_id, {"n": n})

    in_thread(emit_all)


OVERFLOW = {"type": "overflow", "limit": 3}


@pytest.fixture
def idle_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop that runs only when the test says so: a stalled loop until then."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.mark.asyncio
async def test_a_subscriber_one_past_the_limit_is_cut_off_with_the_marker_last() -> None:
    broker = RunBroker(max_backlog=3)
    queue = broker.subscribe("run")
    emit_in_thread(broker, "run", 5)
    await loop_step()
    # Handed as much as fits; the rest waits to see whether it reads.
    assert queue.qsize() == 3
    assert broker.n_subscribers("run") == 1
    await loop_step()  # it read nothing: one more is due and its queue is full
    items = drain(queue)
    assert [item["id"] for item in items[:-1]] == [1, 2, 3]
    assert items[-1] == OVERFLOW
    assert broker.n_subscribers("run") == 0
    assert broker._subscribers == {}
    assert broker.stats().overflowed == 1
    emit_in_thread(broker, "run", 1)
    broker.close("run")
    await loop_step()
    assert drain(queue) == []


@pytest.mark.asyncio
async def test_exactly_the_limit_is_not_an_overflow() -> None:
    broker = RunBroker(max_backlog=3)
    queue = broker.subscribe("run")
    emit_in_thread(broker, "run", 3)
    await loop_step()
    assert len(drain(queue)) == 3
    assert broker.n_subscribers("run") == 1


@pytest.mark.asyncio
async def test_the_limit_counts_what_is_still_queued_across_batches() -> None:
    broker = RunBroker(max_backlog=3)
    reader = broker.subscribe("run")
    idle = broker.subscribe("run")
    emit_in_thread(broker, "run", 2)
    await loop_step()
    assert len(drain(reader)) == 2
    emit_in_thread(broker, "run", 2)
    await loop_step()
    assert [item["id"] for item in drain(reader)] == [3, 4]
    await loop_step()
    items = drain(idle)
    assert [item.get("id") for item in items] == [1, 2, 3, None]
    assert items[-1] == OVERFLOW
    assert broker.n_subscribers("run") == 1


@pytest.mark.asyncio
async def test_done_is_delivered_to_a_full_queue() -> None:
    broker = RunBroker(max_backlog=2)
    queue = broker.subscribe("run")
    emit_in_thread(broker, "run", 2)
    broker.close("run")
    await loop_step()
    assert drain(queue) == [{"n": 0, "id": 1}, {"n": 1, "id": 2}, {"type": "done"}]


@pytest.mark.asyncio
async def test_a_replay_longer_than_the_limit_is_cut_off_and_not_registered() -> None:
    broker = RunBroker(replay_size=5, max_backlog=3)
    emit_in_thread(broker, "run", 5)
    queue = broker.subscribe("run", last_event_id=0)
    items = drain(queue)
    assert [item["id"] for item in items[:-1]] == [1, 2, 3]
    assert items[-1] == OVERFLOW
    assert broker.n_subscribers("run") == 0


@pytest.mark.asyncio
async def test_a_gap_marker_counts_toward_the_limit() -> None:
    broker = RunBroker(replay_size=3, max_backlog=3)
    emit_in_thread(broker, "run", 5)
    items = drain(broker.subscribe("run", last_event_id=0))
    assert [item.get("type") for item in items] == ["gap", None, None, "overflow"]


@pytest.mark.asyncio
async def test_producers_never_block_on_a_subscriber_that_stopped_reading() -> None:
    broker = RunBroker(max_backlog=10)
    stalled = broker.subscribe("run")
    emit_in_thread(broker, "run", 1000)  # returns although nobody reads
    await loop_step()
    await loop_step()
    assert stalled.qsize() == 11
    assert broker.stats().emitted == 1000


class FakeClock:
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_regression_a_stalled_loop_costs_at_most_two_backlogs_of_pending_events(
    idle_loop: asyncio.AbstractEventLoop,
) -> None:
    clock = FakeClock()
    broker = RunBroker(max_backlog=3, replay_size=3, stall_seconds=1.0, clock=clock)
    broker.bind_loop(idle_loop)
    behind = broker.subscribe("run")
    leaving = broker.subscribe("run")
    emit_in_thread(broker, "run", 50)
    assert broker.stats().stalls == 0  # no time has passed: a burst, however long
    broker.unsubscribe("run", leaving)
    late = broker.subscribe("run")
    clock.now = 1.0  # the loop has taken nothing for stall_seconds
    emit_in_thread(broker, "run", 2)
    stats = broker.stats()
    assert stats.stalls == 1
    # The last 3 pending, one more since, and the 3 that `behind` gets before its marker.
    assert stats.pending == 4 + 3
    idle_loop.run_until_complete(loop_step())  # the loop runs again: the flush
    # What each subscriber gets is what an unbounded pending list would have given it.
    assert drain(behind) == [{"n": 0, "id": 1}, {"n": 1, "id": 2}, {"n": 2, "id": 3}, OVERFLOW]
    assert drain(leaving) == []
    assert [item["id"] for item in drain(late)] == [51, 52]
    assert broker.n_subscribers("run") == 1
    assert broker.stats().overflowed == 1
    assert broker.stats().pending == 0
