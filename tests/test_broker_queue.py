"""``EventQueue``: batches go in with one call, and everything else still counts single items."""

from __future__ import annotations

import asyncio

import pytest

from broker import EventQueue

EVENTS = [{"id": n} for n in range(1, 4)]


@pytest.mark.asyncio
async def test_a_batch_is_counted_and_read_item_by_item() -> None:
    queue = EventQueue()
    queue.put_batch(EVENTS)
    queue.put_nowait({"id": 4})
    assert queue.qsize() == 4
    assert not queue.empty()
    assert await queue.get() == {"id": 1}
    assert queue.get_nowait() == {"id": 2}
    assert [await queue.get(), queue.get_nowait()] == [{"id": 3}, {"id": 4}]
    assert queue.empty()
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()


@pytest.mark.asyncio
async def test_an_empty_batch_changes_nothing() -> None:
    queue = EventQueue()
    queue.put_batch([])
    assert queue.empty()
    joined = asyncio.ensure_future(queue.join())
    await asyncio.sleep(0)  # one loop turn: join() returns at once when nothing is unfinished
    assert joined.done()


@pytest.mark.asyncio
async def test_put_batch_keeps_no_reference_to_the_callers_list() -> None:
    queue = EventQueue()
    batch = list(EVENTS)
    queue.put_batch(batch)
    batch.clear()
    assert queue.qsize() == 3


@pytest.mark.asyncio
async def test_task_done_and_join_count_each_item_of_a_batch() -> None:
    queue = EventQueue()
    queue.put_batch(EVENTS)
    joined = asyncio.ensure_future(queue.join())
    for _ in EVENTS[:-1]:
        queue.get_nowait()
        queue.task_done()
        await asyncio.sleep(0)
        assert not joined.done()
    queue.get_nowait()
    queue.task_done()
    await joined
    with pytest.raises(ValueError):
        queue.task_done()


@pytest.mark.asyncio
async def test_one_batch_wakes_as_many_waiting_readers_as_it_has_items() -> None:
    queue = EventQueue()
    readers = [asyncio.ensure_future(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)  # all three are now waiting
    queue.put_batch(EVENTS)
    assert sorted(item["id"] for item in await asyncio.gather(*readers)) == [1, 2, 3]


@pytest.mark.asyncio
async def test_a_reader_waiting_on_an_empty_queue_gets_the_first_item_of_a_batch() -> None:
    queue = EventQueue()
    reader = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_batch(EVENTS)
    assert await reader == {"id": 1}
    assert queue.qsize() == 2
