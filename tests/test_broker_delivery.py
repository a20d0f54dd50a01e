"""Delivery: ids, ordering, no loss, done exactly once and last, close, cleanup, coalescing.

Interleavings are driven, not hoped for: producers run on a thread that is joined before the
test goes on, and ``loop_step()`` lets the loop run the flush the broker scheduled.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from broker import RunBroker, is_terminal
from tests.broker_support import drain, in_thread, loop_step


def emit_many(broker: RunBroker, run_id: str, producer: int, count: int) -> None:
    for seq in range(count):
        broker.emit(run_id, {"producer": producer, "seq": seq})


@pytest.mark.asyncio
async def test_subscribe_returns_an_asyncio_queue_of_plain_dicts_ending_with_done() -> None:
    broker = RunBroker()
    queue = broker.subscribe("run")
    assert isinstance(queue, asyncio.Queue)
    in_thread(broker.emit, "run", {"n": 1})
    in_thread(broker.close, "run")
    items = [await queue.get(), await queue.get()]
    assert items == [{"n": 1, "id": 1}, {"type": "done"}]
    assert all(type(item) is dict for item in items)
    assert queue.empty()


@pytest.mark.asyncio
async def test_ids_count_from_1_per_run_and_are_added_to_a_copy() -> None:
    broker = RunBroker()
    queue = broker.subscribe("a")
    other = broker.subscribe("b")
    original = {"step": 1}
    broker.emit("a", original)
    broker.emit("b", {"step": 1})
    broker.emit("a", {"step": 2})
    await loop_step()
    assert drain(queue) == [{"step": 1, "id": 1}, {"step": 2, "id": 2}]
    assert drain(other) == [{"step": 1, "id": 1}]
    assert original == {"step": 1}


@pytest.mark.asyncio
async def test_an_event_of_a_dict_subclass_is_delivered_as_a_plain_dict() -> None:
    broker = RunBroker()
    queue = broker.subscribe("run")
    broker.emit("run", OrderedDict(n=1))
    broker.emit("run", defaultdict(list, n=2))
    await loop_step()
    items = drain(queue)
    assert items == [{"n": 1, "id": 1}, {"n": 2, "id": 2}]
    assert [type(item) for item in items] == [dict, dict]


@pytest.mark.asyncio
async def test_events_from_a_thread_arrive_in_emit_order_then_done() -> None:
    broker = RunBroker()
    queue = broker.subscribe("run")
    in_thread(emit_many, broker, "run", 0, 50)
    in_thread(broker.close, "run")
    await loop_step()
    items = drain(queue)
    assert [item["seq"] for item in items[:-1]] == list(range(50))
    assert [item["id"] for item in items[:-1]] == list(range(1, 51))
    assert items[-1] == {"type": "done"}


@pytest.mark.asyncio
async def test_two_producer_threads_keep_their_order_and_all_subscribers_agree() -> None:
    broker = RunBroker()
    queues = [broker.subscribe("run") for _ in range(3)]
    threads = [threading.Thread(target=emit_many, args=(broker, "run", p, 500)) for p in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    broker.close("run")
    await loop_step()
    received = [drain(queue) for queue in queues]
    assert received[0] == received[1] == received[2]
    events = received[0][:-1]
    assert [event["id"] for event in events] == list(range(1, 1001))
    for producer in (0, 1):
        seqs = [event["seq"] for event in events if event["producer"] == producer]
        assert seqs == list(range(500))
    assert received[0][-1] == {"type": "done"}


@pytest.mark.asyncio
async def test_no_event_emitted_after_subscribe_is_lost_across_batches() -> None:
    broker = RunBroker()
    queue = broker.subscribe("run")
    got: list[dict[str, Any]] = []
    for batch in range(5):
        in_thread(emit_many, broker, "run", batch, 20)
        await loop_step()
        got += drain(queue)
    assert [event["id"] for event in got] == list(range(1, 101))


@pytest.mark.asyncio
async def test_a_live_subscriber_gets_no_event_that_was_pending_when_it_subscribed() -> None:
    broker = RunBroker()
    early = broker.subscribe("run")
    in_thread(emit_many, broker, "run", 0, 3)  # pending: the flush has not run yet
    late = broker.subscribe("run")
    in_thread(emit_many, broker, "run", 1, 2)
    await loop_step()
    assert [event["id"] for event in drain(early)] == [1, 2, 3, 4, 5]
    assert [event["id"] for event in drain(late)] == [4, 5]


@pytest.mark.asyncio
async def test_done_exactly_once_and_last_even_with_a_second_close() -> None:
    broker = RunBroker()
    queues = [broker.subscribe("run") for _ in range(2)]
    broker.emit("run", {"n": 1})
    in_thread(broker.close, "run")
    in_thread(broker.close, "run")
    await loop_step()
    await loop_step()
    for queue in queues:
        items = drain(queue)
        assert items == [{"n": 1, "id": 1}, {"type": "done"}]


@pytest.mark.asyncio
async def test_emit_after_close_is_dropped_and_counted() -> None:
    broker = RunBroker()
    queue = broker.subscribe("run")
    broker.emit("run", {"n": 1})
    broker.close("run")
    in_thread(broker.emit, "run", {"n": 2})
    await loop_step()
    assert drain(queue) == [{"n": 1, "id": 1}, {"type": "done"}]
    assert broker.stats().dropped_after_close == 1
    assert broker.stats().emitted == 1


@pytest.mark.asyncio
async def test_subscribe_after_close_gets_done_at_once_and_is_not_registered() -> None:
    broker = RunBroker()
    broker.emit("run", {"n": 1})
    broker.close("run")
    queue = broker.subscribe("run")
    assert drain(queue) == [{"type": "done"}]
    assert broker.n_subscribers("run") == 0
    assert "run" not in broker._subscribers


@pytest.mark.asyncio
async def test_closing_a_run_never_emitted_to_still_answers_late_subscribers() -> None:
    broker = RunBroker()
    waiting = broker.subscribe("run")
    in_thread(broker.close, "run")
    await loop_step()
    assert drain(waiting) == [{"type": "done"}]
    assert drain(broker.subscribe("run")) == [{"type": "done"}]
    assert broker.is_done("run")


@pytest.mark.asyncio
async def test_emit_and_close_on_the_loop_thread_work_too() -> None:
    broker = RunBroker()
    queue = broker.subscribe("run")
    broker.emit("run", {"n": 1})
    broker.close("run")
    await loop_step()
    assert drain(queue) == [{"n": 1, "id": 1}, {"type": "done"}]


@pytest.mark.asyncio
async def test_an_emitted_event_typed_done_is_a_regular_event() -> None:
    broker = RunBroker()
    queue = broker.subscribe("run")
    broker.emit("run", {"type": "done"})
    await loop_step()
    [event] = drain(queue)
    assert event == {"type": "done", "id": 1}
    assert not is_terminal(event)
    assert broker.n_subscribers("run") == 1


@pytest.mark.asyncio
async def test_subscriber_map_entry_is_removed_once_done_is_delivered() -> None:
    broker = RunBroker()
    broker.subscribe("run")
    broker.subscribe("run")
    broker.close("run")
    assert broker.n_subscribers("run") == 2  # done is pending, not yet delivered
    await loop_step()
    assert broker.n_subscribers("run") == 0
    assert broker._subscribers == {}


@pytest.mark.asyncio
async def test_subscriber_map_entry_is_removed_when_the_last_subscriber_leaves() -> None:
    broker = RunBroker()
    first = broker.subscribe("run")
    second = broker.subscribe("run")
    broker.unsubscribe("run", first)
    assert broker.n_subscribers("run") == 1
    broker.emit("run", {"n": 1})
    await loop_step()
    assert drain(first) == []
    assert drain(second) == [{"n": 1, "id": 1}]
    broker.unsubscribe("run", second)
    assert broker.n_subscribers("run") == 0
    assert broker._subscribers == {}


@pytest.mark.asyncio
async def test_an_open_run_keeps_its_ids_and_replay_when_all_subscribers_leave() -> None:
    broker = RunBroker()
    queue = broker.subscribe("run")
    broker.emit("run", {"n": 1})
    await loop_step()
    broker.unsubscribe("run", queue)
    broker.emit("run", {"n": 2})
    again = broker.subscribe("run", last_event_id=1)
    broker.emit("run", {"n": 3})
    await loop_step()
    assert drain(again) == [{"n": 2, "id": 2}, {"n": 3, "id": 3}]


@pytest.mark.asyncio
@pytest.mark.parametrize("subscribers", [1, 100])
async def test_the_loop_is_woken_once_per_batch_whatever_the_number_of_subscribers(
    subscribers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    wakeups: list[object] = []
    real = loop.call_soon_threadsafe

    def counting(callback: Callable[..., object], *args: Any, **kwargs: Any) -> asyncio.Handle:
        wakeups.append(callback)
        return real(callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    broker = RunBroker()
    queues = [broker.subscribe("run") for _ in range(subscribers)]
    in_thread(emit_many, broker, "run", 0, 100)
    assert len(wakeups) == 1
    await loop_step()
    in_thread(emit_many, broker, "run", 1, 10)
    in_thread(broker.close, "run")
    assert len(wakeups) == 2
    await loop_step()
    for queue in queues:
        assert len(drain(queue)) == 111


@pytest.mark.asyncio
async def test_regression_a_queue_that_refuses_items_is_forgotten_and_others_still_get_theirs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = RunBroker()
    refusing = broker.subscribe("a")
    same_run = broker.subscribe("a")
    other_run = broker.subscribe("b")
    if hasattr(refusing, "shutdown"):  # Python 3.13+: the reader shut its queue down
        refusing.shutdown()
    else:

        def refuse(items: list[dict[str, Any]]) -> None:
            raise RuntimeError("this queue takes no more items")

        monkeypatch.setattr(refusing, "put_batch", refuse)
    for round_ in range(2):
        in_thread(broker.emit, "a", {"n": round_})
        in_thread(broker.emit, "b", {"n": round_})
        await loop_step()
        assert [event["n"] for event in drain(same_run)] == [round_]
        assert [event["n"] for event in drain(other_run)] == [round_]
    assert broker.n_subscribers("a") == 1
