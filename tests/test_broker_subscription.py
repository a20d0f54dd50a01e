"""``async with broker.subscription(run_id) as sub: async for item in sub`` and its cleanup."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker import RunBroker, Subscription


async def collect(subscription: Subscription) -> list[dict[str, Any]]:
    return [item async for item in subscription]


@pytest.mark.asyncio
async def test_iteration_yields_everything_and_ends_after_done() -> None:
    broker = RunBroker()
    async with broker.subscription("run") as sub:
        assert sub.run_id == "run"
        assert broker.n_subscribers("run") == 1
        broker.emit("run", {"n": 1})
        broker.close("run")
        assert await collect(sub) == [{"n": 1, "id": 1}, {"type": "done"}]
        assert await collect(sub) == []  # finished: stays finished
    assert broker.n_subscribers("run") == 0


@pytest.mark.asyncio
async def test_replay_with_a_gap_marker_then_overflow_end_the_iteration() -> None:
    broker = RunBroker(replay_size=2, max_backlog=3)
    for n in range(4):
        broker.emit("run", {"n": n})
    async with broker.subscription("run", last_event_id=0) as sub:
        assert sub.last_event_id == 0
        for n in range(4, 6):
            broker.emit("run", {"n": n})
        await asyncio.sleep(0)  # the flush runs while the replay is still unread
        items = await collect(sub)
    assert [item.get("type") for item in items] == ["gap", None, None, "overflow"]
    assert [item["id"] for item in items[1:3]] == [3, 4]


@pytest.mark.asyncio
async def test_leaving_early_unsubscribes() -> None:
    broker = RunBroker()
    async with broker.subscription("run") as sub:
        broker.emit("run", {"n": 1})
        async for _item in sub:
            break
    assert broker.n_subscribers("run") == 0


@pytest.mark.asyncio
async def test_an_error_in_the_block_unsubscribes_and_propagates() -> None:
    broker = RunBroker()
    with pytest.raises(KeyError):
        async with broker.subscription("run"):
            raise KeyError("boom")
    assert broker.n_subscribers("run") == 0


@pytest.mark.asyncio
async def test_cancelling_a_reader_unsubscribes() -> None:
    broker = RunBroker()
    entered = asyncio.Event()

    async def reader() -> None:
        async with broker.subscription("run") as sub:
            entered.set()
            await collect(sub)

    task = asyncio.ensure_future(reader())
    await entered.wait()
    assert broker.n_subscribers("run") == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert broker.n_subscribers("run") == 0
    assert broker._subscribers == {}


@pytest.mark.asyncio
async def test_the_queue_exists_only_once_entered_and_entering_twice_is_refused() -> None:
    broker = RunBroker()
    sub = broker.subscription("run")
    with pytest.raises(RuntimeError, match="async with"):
        _ = sub.queue
    async with sub:
        assert sub.queue.empty()
        with pytest.raises(RuntimeError, match="once"):
            await sub.__aenter__()
    assert broker.n_subscribers("run") == 0
