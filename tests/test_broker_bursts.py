"""Bursts and stalls: a subscriber that reads is never cut off, and a stalled loop costs bounded
memory.

A burst is producers outrunning the loop thread for a few milliseconds under the GIL; the loop
still flushes between them. A stall is the loop taking nothing for ``stall_seconds``. The burst
scenarios run with the default ``RunBroker()`` on real threads; the stall is measured on a fake
clock that the test moves, so no verdict depends on how fast this machine is.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from broker import EventQueue, RunBroker, is_terminal
from tests.broker_support import drain, loop_step

Item = dict[str, Any]
DONE = {"type": "done"}


class FakeClock:
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idle_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop that runs only when the test says so: a stalled loop until then."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def one_turn(loop: asyncio.AbstractEventLoop) -> None:
    """Run one iteration of a loop the test owns: the callbacks ready now, and nothing they
    schedule (``run_until_complete`` would take a second turn to finish its task)."""
    loop.call_soon(loop.stop)
    loop.run_forever()


async def read_all(queue: asyncio.Queue[Item]) -> list[Item]:
    """Everything the queue gets up to its terminal item, read as fast as the loop lets us."""
    items = []
    while True:
        item = await queue.get()
        items.append(item)
        if is_terminal(item):
            return items


def emit_burst(broker: RunBroker, producers: int, events: int) -> threading.Thread:
    """Start ``producers`` threads emitting ``events`` each in a tight loop, and a thread that
    closes the run once they are done; return the closer."""

    def produce(producer: int) -> None:
        for seq in range(events):
            broker.emit("run", {"producer": producer, "seq": seq})

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]

    def close_after() -> None:
        for thread in threads:
            thread.join()
        broker.close("run")

    closer = threading.Thread(target=close_after)
    for thread in threads:
        thread.start()
    closer.start()
    return closer


def assert_complete(items: list[Item], producers: int, events: int) -> None:
    """Every event once, in id order and each producer's in emit order, then done."""
    assert items[-1] == DONE, f"ended with {items[-1]!r} after {len(items) - 1} items"
    events_got = items[:-1]
    assert [item["id"] for item in events_got] == list(range(1, producers * events + 1))
    for producer in range(producers):
        seqs = [item["seq"] for item in events_got if item["producer"] == producer]
        assert seqs == list(range(events))


async def burst_to_readers(producers: int, events: int, readers: int) -> list[list[Item]]:
    broker = RunBroker()
    queues = [broker.subscribe("run") for _ in range(readers)]
    tasks = [asyncio.create_task(read_all(queue)) for queue in queues]
    closer = emit_burst(broker, producers, events)
    results = await asyncio.gather(*tasks)
    closer.join()
    assert broker.stats().overflowed == 0
    assert broker.n_subscribers("run") == 0
    assert broker.stats().pending == 0
    return list(results)


@pytest.mark.asyncio
async def test_two_producers_bursting_to_ten_readers_deliver_every_event_then_done() -> None:
    # Was: every reader got overflow after about 10,000 events, and a reader waiting for done
    # waited for ever.
    for items in await burst_to_readers(producers=2, events=20_000, readers=10):
        assert_complete(items, producers=2, events=20_000)


@pytest.mark.asyncio
async def test_one_producer_bursting_300k_events_to_a_continuous_reader_delivers_them_all() -> None:
    # Was: the reader got about 10,000 events, then overflow.
    (items,) = await burst_to_readers(producers=1, events=300_000, readers=1)
    assert_complete(items, producers=1, events=300_000)


@pytest.mark.asyncio
async def test_with_default_settings_a_subscriber_that_never_reads_is_still_cut_off() -> None:
    broker = RunBroker()
    limit = 10_000  # the default max_backlog
    frozen = broker.subscribe("run")
    tasks = [asyncio.create_task(read_all(broker.subscribe("run"))) for _ in range(2)]
    closer = emit_burst(broker, producers=1, events=3 * limit)
    for items in await asyncio.gather(*tasks):
        assert_complete(items, producers=1, events=3 * limit)
    closer.join()
    # The readers' done and the frozen subscriber's cut-off can come from different flushes.
    for _ in range(3):
        if broker.n_subscribers("run") == 0:
            break
        await loop_step()
    items = drain(frozen)
    assert [item["id"] for item in items[:-1]] == list(range(1, limit + 1))
    assert items[-1] == {"type": "overflow", "limit": limit}
    assert broker.stats().overflowed == 1
    assert broker.n_subscribers("run") == 0


def test_a_burst_the_loop_takes_in_one_flush_is_not_held_against_a_reader(
    idle_loop: asyncio.AbstractEventLoop,
) -> None:
    broker = RunBroker(max_backlog=3, clock=FakeClock())
    broker.bind_loop(idle_loop)
    reader = broker.subscribe("run")
    for n in range(20):  # a burst: the loop takes none of it, but no time passes
        broker.emit("run", {"n": n})
    broker.close("run")
    assert broker.stats().pending == 20
    got: list[Item] = []
    for _ in range(20):
        one_turn(idle_loop)  # one flush, then the reader empties its queue
        got += drain(reader)
        # The broker keeps only what the reader has not been handed yet.
        assert broker.stats().pending == 20 - sum(1 for item in got if "id" in item)
        if got and is_terminal(got[-1]):
            break
    assert got == [*({"n": n, "id": n + 1} for n in range(20)), DONE]
    stats = broker.stats()
    assert (stats.overflowed, stats.stalls, stats.pending, stats.subscribers) == (0, 0, 0, 0)


def test_the_loop_counts_as_stalled_only_after_stall_seconds_without_a_flush(
    idle_loop: asyncio.AbstractEventLoop,
) -> None:
    clock = FakeClock()
    broker = RunBroker(max_backlog=3, stall_seconds=1.0, clock=clock)
    broker.bind_loop(idle_loop)
    reader = broker.subscribe("run")
    for n in range(3):  # max_backlog events waiting: the stall clock starts
        broker.emit("run", {"n": n})
    clock.now = 0.999
    for n in range(3, 6):
        broker.emit("run", {"n": n})
    assert (broker.stats().stalls, broker.stats().pending) == (0, 6)
    one_turn(idle_loop)  # a flush: the loop is alive after all
    assert [item["id"] for item in drain(reader)] == [1, 2, 3]
    clock.now = 5.0  # the time before that flush does not count
    for n in range(6, 9):
        broker.emit("run", {"n": n})
    assert broker.stats().stalls == 0
    clock.now = 6.0
    for n in range(9, 12):
        broker.emit("run", {"n": n})
    assert broker.stats().stalls == 1
    one_turn(idle_loop)
    # Owed 9 events when the stall was seen: it keeps the 3 it gets before the marker.
    items = drain(reader)
    assert [item.get("id") for item in items] == [4, 5, 6, None]
    assert items[-1] == {"type": "overflow", "limit": 3}


def test_a_loop_blocked_by_a_sync_call_keeps_memory_bounded() -> None:
    clock = FakeClock()
    limit = 100
    broker = RunBroker(max_backlog=limit, stall_seconds=1.0, clock=clock)
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever)
    loop_thread.start()
    blocked, release = threading.Event(), threading.Event()

    def block() -> None:
        blocked.set()
        release.wait()  # a sync call in a loop callback: the loop takes nothing meanwhile

    async def start_reader() -> asyncio.Task[list[Item]]:
        return asyncio.create_task(read_all(broker.subscribe("run")))

    try:
        reader = asyncio.run_coroutine_threadsafe(start_reader(), loop).result()
        loop.call_soon_threadsafe(block)
        blocked.wait()
        for n in range(limit):
            broker.emit("run", {"n": n})
        clock.now = 1.0
        peak = 0
        for n in range(limit, 100 * limit):
            broker.emit("run", {"n": n})
            peak = max(peak, broker.stats().pending)
        release.set()
        broker.close("run")

        async def result() -> list[Item]:
            return await reader

        items = asyncio.run_coroutine_threadsafe(result(), loop).result()
    finally:
        release.set()
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join()
        loop.close()
    # At most 2 * limit pending, and the `limit` items the cut-off reader gets before its marker.
    assert peak <= 3 * limit
    assert broker.stats().stalls > 0
    assert [item.get("id") for item in items] == [*range(1, limit + 1), None]
    assert items[-1] == {"type": "overflow", "limit": limit}
    assert broker.stats().pending == 0


def test_a_closed_run_whose_reader_is_still_owed_events_is_not_forgotten(
    idle_loop: asyncio.AbstractEventLoop,
) -> None:
    broker = RunBroker(max_backlog=3, retain_closed_runs=1)
    broker.bind_loop(idle_loop)
    reader = broker.subscribe("run")
    for n in range(5):
        broker.emit("run", {"n": n})
    broker.close("run")
    one_turn(idle_loop)
    assert [item["id"] for item in drain(reader)] == [1, 2, 3]
    broker.close("other-1")
    broker.close("other-2")  # one closed run is remembered beside those still delivering
    assert broker.is_done("run")
    one_turn(idle_loop)
    assert drain(reader) == [{"n": 3, "id": 4}, {"n": 4, "id": 5}, DONE]
    assert broker.n_subscribers("run") == 0


def test_a_reader_that_leaves_while_owed_events_releases_them(
    idle_loop: asyncio.AbstractEventLoop,
) -> None:
    broker = RunBroker(max_backlog=3)
    broker.bind_loop(idle_loop)
    reader = broker.subscribe("run")
    for n in range(10):
        broker.emit("run", {"n": n})
    one_turn(idle_loop)
    assert isinstance(reader, EventQueue)
    broker.unsubscribe("run", reader)
    one_turn(idle_loop)
    assert broker.stats().pending == 0
    assert broker.n_subscribers("run") == 0


def test_regression_a_new_loop_does_not_inherit_the_stall_of_a_closed_one() -> None:
    clock = FakeClock()
    broker = RunBroker(max_backlog=3, stall_seconds=1.0, clock=clock)
    old_loop = asyncio.new_event_loop()
    broker.bind_loop(old_loop)
    broker.subscribe("run")
    for n in range(3):  # the stall clock starts; the old loop never runs
        broker.emit("run", {"n": n})
    old_loop.close()
    clock.now = 10.0
    new_loop = asyncio.new_event_loop()
    try:
        broker.bind_loop(new_loop)  # the broker moves: the old loop's subscribers are dropped
        reader = broker.subscribe("run")
        for n in range(3, 9):  # two checks, no time between them: not a stall
            broker.emit("run", {"n": n})
        assert broker.stats().stalls == 0
        one_turn(new_loop)
        assert [item["id"] for item in drain(reader)] == [4, 5, 6]
    finally:
        new_loop.close()


def test_regression_one_flush_hands_out_about_max_backlog_events_however_many_subscribers(
    idle_loop: asyncio.AbstractEventLoop,
) -> None:
    # Each of 200 readers handed all the room it had (10,000 events) made one loop turn, the
    # flush and then 2,000,000 reads, last longer than stall_seconds on 2 cores with 4
    # producers: bench load saw a stall, and cut every reader off.
    broker = RunBroker(clock=FakeClock())
    broker.bind_loop(idle_loop)
    readers = [broker.subscribe("run") for _ in range(40)]
    for n in range(5_000):
        broker.emit("run", {"n": n})
    one_turn(idle_loop)
    # 10,000 / 40 is 250, and a reader's wake-up is paid for by at least 256 items.
    assert [reader.qsize() for reader in readers] == [256] * 40
    broker.close("run")
    got: list[list[Item]] = [[] for _ in readers]
    for _ in range(40):
        for items, reader in zip(got, readers, strict=True):
            items += drain(reader)
        if all(items and is_terminal(items[-1]) for items in got):
            break
        one_turn(idle_loop)
    for items in got:
        assert items == [*({"n": n, "id": n + 1} for n in range(5_000)), DONE]
