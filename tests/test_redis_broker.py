"""``RedisRunBroker`` against a real ``redis-server``: ids, live delivery, replay and gaps, close
and late subscribers, overflow, cleanup, isolation, connection count, and the faults (the
reader's connection killed, Redis restarted, Redis unreachable or frozen at emit).

Waiting is on the broker's own queues (``get`` with a generous timeout that only stops a broken
test from hanging) or on ``flush()``, which returns once everything Redis holds for the local
subscribers is in their queues.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from broker.events import is_terminal
from broker.redis import URL_ENV, BrokerUnavailable, RedisRunBroker
from tests.broker_support import drain, in_thread
from tests.redis_support import BrokerFactory, RedisServer, running_redis

WAIT = 20.0


async def read_until_terminal(queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    items = []
    while True:
        item = await asyncio.wait_for(queue.get(), WAIT)
        items.append(item)
        if is_terminal(item):
            return items


def ids(items: list[dict[str, Any]]) -> list[int]:
    return [item["id"] for item in items if "id" in item]


def emit_range(broker: RedisRunBroker, run: str, first: int, last: int) -> None:
    def emit_all() -> None:
        for n in range(first, last + 1):
            broker.emit(run, {"n": n})

    in_thread(emit_all)


@pytest.mark.asyncio
async def test_ids_are_1_2_3_and_live_events_arrive_then_done(redis_broker: BrokerFactory) -> None:
    broker = redis_broker()
    queue = broker.subscribe("run")
    emit_range(broker, "run", 1, 5)
    in_thread(broker.close, "run")
    items = await read_until_terminal(queue)
    assert items == [*({"n": n, "id": n} for n in range(1, 6)), {"type": "done"}]
    assert broker.n_subscribers("run") == 0
    assert broker.is_done("run")


@pytest.mark.asyncio
async def test_a_live_subscriber_gets_no_event_from_before_it_subscribed(
    redis_broker: BrokerFactory,
) -> None:
    broker = redis_broker()
    emit_range(broker, "run", 1, 3)
    queue = broker.subscribe("run")
    emit_range(broker, "run", 4, 5)
    in_thread(broker.close, "run")
    assert ids(await read_until_terminal(queue)) == [4, 5]


@pytest.mark.asyncio
async def test_subscribers_at_different_points_of_one_run_each_get_exactly_their_events(
    redis_broker: BrokerFactory,
) -> None:
    broker = redis_broker()
    # No await until the last subscribe: the reader task reads the run once, from the
    # earliest subscriber's point, and must give each subscriber only what comes after its own.
    early = broker.subscribe("run")
    emit_range(broker, "run", 1, 3)
    late = broker.subscribe("run")
    replaying = broker.subscribe("run", last_event_id=1)
    emit_range(broker, "run", 4, 5)
    in_thread(broker.close, "run")
    assert ids(await read_until_terminal(early)) == [1, 2, 3, 4, 5]
    assert ids(await read_until_terminal(late)) == [4, 5]
    assert ids(await read_until_terminal(replaying)) == [2, 3, 4, 5]


@pytest.mark.asyncio
async def test_a_subscriber_of_a_closed_run_gets_done_at_once(redis_broker: BrokerFactory) -> None:
    broker = redis_broker()
    emit_range(broker, "run", 1, 2)
    in_thread(broker.close, "run")
    queue = broker.subscribe("run")
    assert drain(queue) == [{"type": "done"}]
    assert broker.n_subscribers("run") == 0


@pytest.mark.asyncio
async def test_replay_after_n_then_live_with_no_hole_and_no_duplicate(
    redis_broker: BrokerFactory,
) -> None:
    broker = redis_broker()
    emit_range(broker, "run", 1, 5)
    queue = broker.subscribe("run", last_event_id=3)
    emit_range(broker, "run", 6, 8)
    in_thread(broker.close, "run")
    assert ids(await read_until_terminal(queue)) == [4, 5, 6, 7, 8]


@pytest.mark.asyncio
async def test_replay_of_a_closed_run_then_done(redis_broker: BrokerFactory) -> None:
    broker = redis_broker()
    emit_range(broker, "run", 1, 4)
    in_thread(broker.close, "run")
    items = await read_until_terminal(broker.subscribe("run", last_event_id=0))
    assert ids(items) == [1, 2, 3, 4] and items[-1] == {"type": "done"}


@pytest.mark.asyncio
async def test_a_gap_marker_comes_first_when_the_stream_was_trimmed_past_n(
    redis_broker: BrokerFactory,
) -> None:
    broker = redis_broker(replay_size=10)
    emit_range(broker, "run", 1, 500)
    in_thread(broker.close, "run")
    items = await read_until_terminal(broker.subscribe("run", last_event_id=2))
    gap = items[0]
    assert gap["type"] == "gap" and gap["last_event_id"] == 2
    first = gap["first_available_id"]
    # Approximate trimming keeps at least the window, in whole nodes.
    assert 3 < first <= 491
    assert ids(items) == list(range(first, 501))


@pytest.mark.asyncio
async def test_no_gap_when_the_stream_still_has_the_event_after_n(
    redis_broker: BrokerFactory,
) -> None:
    broker = redis_broker(replay_size=10)
    emit_range(broker, "run", 1, 500)
    in_thread(broker.close, "run")
    items = await read_until_terminal(broker.subscribe("run", last_event_id=495))
    assert items == [*({"n": n, "id": n} for n in range(496, 501)), {"type": "done"}]


@pytest.mark.asyncio
async def test_an_id_beyond_the_newest_gets_a_gap_to_the_next_id(
    redis_broker: BrokerFactory,
) -> None:
    broker = redis_broker()
    emit_range(broker, "run", 1, 3)
    queue = broker.subscribe("run", last_event_id=7)
    # The replay is read by the reader task: the gap names the next id as of that read.
    await broker.flush()
    emit_range(broker, "run", 4, 4)
    in_thread(broker.close, "run")
    items = await read_until_terminal(queue)
    assert items[0] == {"type": "gap", "last_event_id": 7, "first_available_id": 4}
    assert ids(items) == [4]


@pytest.mark.asyncio
async def test_emit_after_close_is_dropped_and_counted_and_close_is_idempotent(
    redis_broker: BrokerFactory,
) -> None:
    broker = redis_broker()
    queue = broker.subscribe("run")
    emit_range(broker, "run", 1, 1)
    in_thread(broker.close, "run")
    in_thread(broker.close, "run")
    emit_range(broker, "run", 2, 2)
    assert ids(await read_until_terminal(queue)) == [1]
    await broker.flush()
    assert drain(queue) == []
    late = await read_until_terminal(broker.subscribe("run", last_event_id=0))
    assert ids(late) == [1] and late.count({"type": "done"}) == 1
    assert broker.stats().dropped_after_close == 1
    assert broker.stats().emitted == 1


@pytest.mark.asyncio
async def test_a_subscriber_that_stops_reading_is_cut_off_with_overflow_last(
    redis_broker: BrokerFactory,
) -> None:
    broker = redis_broker(max_backlog=3)
    slow = broker.subscribe("run")
    fast = broker.subscribe("run")
    for n in range(1, 11):
        emit_range(broker, "run", n, n)
        await broker.flush()
        drain(fast)
    items = drain(slow)
    assert items == [
        {"n": 1, "id": 1},
        {"n": 2, "id": 2},
        {"n": 3, "id": 3},
        {"type": "overflow", "limit": 3},
    ]
    assert broker.n_subscribers("run") == 1
    assert broker.stats().overflowed == 1


@pytest.mark.asyncio
async def test_unsubscribe_leaves_no_entry_for_the_run(redis_broker: BrokerFactory) -> None:
    broker = redis_broker()
    first, second = broker.subscribe("run"), broker.subscribe("run")
    assert broker.n_subscribers("run") == 2
    broker.unsubscribe("run", first)
    in_thread(broker.unsubscribe, "run", second)
    assert broker.n_subscribers("run") == 0
    assert "run" not in broker._subscribers
    broker.unsubscribe("run", second)  # a no-op
    emit_range(broker, "run", 1, 2)
    await broker.flush()
    assert drain(first) == [] and drain(second) == []


@pytest.mark.asyncio
async def test_two_brokers_on_one_server_never_see_each_others_runs(
    redis_broker: BrokerFactory,
) -> None:
    one, other = redis_broker(), redis_broker()
    queue = other.subscribe("run")
    emit_range(one, "run", 1, 3)
    in_thread(one.close, "run")
    emit_range(other, "run", 1, 1)
    in_thread(other.close, "run")
    assert await read_until_terminal(queue) == [{"n": 1, "id": 1}, {"type": "done"}]


@pytest.mark.asyncio
async def test_brokers_sharing_a_namespace_share_runs(redis_broker: BrokerFactory) -> None:
    producer, consumer = redis_broker(namespace="shared-ns"), redis_broker(namespace="shared-ns")
    queue = consumer.subscribe("run")
    emit_range(producer, "run", 1, 2)
    in_thread(producer.close, "run")
    assert ids(await read_until_terminal(queue)) == [1, 2]


def test_without_a_url_the_error_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    with pytest.raises(ValueError, match=URL_ENV):
        RedisRunBroker()


@pytest.mark.asyncio
async def test_the_url_comes_from_the_environment(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(URL_ENV, redis_server.url)
    broker = RedisRunBroker()
    try:
        assert broker.url == redis_server.url
        queue = broker.subscribe("run")
        emit_range(broker, "run", 1, 1)
        assert (await asyncio.wait_for(queue.get(), WAIT))["id"] == 1
    finally:
        await broker.aclose()


@pytest.mark.asyncio
async def test_bad_arguments_raise_at_the_call_site(redis_broker: BrokerFactory) -> None:
    broker = redis_broker()
    with pytest.raises(TypeError):
        broker.emit("run", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        broker.emit("run", {"id": 3})
    with pytest.raises(TypeError):
        broker.emit("run", {"x": object()})
    with pytest.raises(TypeError):
        broker.emit(7, {"x": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        broker.subscribe("run", last_event_id=-1)
    with pytest.raises(TypeError):
        broker.subscribe("run", last_event_id="3")  # type: ignore[arg-type]
    assert broker.stats().emitted == 0


@pytest.mark.asyncio
async def test_connections_do_not_grow_with_subscribers(
    redis_server: RedisServer, redis_broker: BrokerFactory
) -> None:
    broker = redis_broker()
    producer_name, reader_name = broker.client_names()
    queues = [(run, broker.subscribe(run)) for run in (f"run-{i}" for i in range(20))]
    queues += [(run, broker.subscribe(run, last_event_id=0)) for run, _ in queues]
    for run, _ in queues[:20]:
        emit_range(broker, run, 1, 2)
        in_thread(broker.close, run)
    for _, queue in queues:
        assert ids(await read_until_terminal(queue)) == [1, 2]
    # The reader's XREAD, plus one for a wake-up or flush: not one per subscriber or run.
    assert redis_server.clients_named(reader_name) <= 2
    assert redis_server.clients_named(producer_name) <= 2


# -- faults -----------------------------------------------------------------------------------


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of the test's own, for the faults that stop it."""
    with running_redis() as server:
        yield server


@pytest.mark.asyncio
async def test_killing_the_readers_connection_loses_nothing(
    redis_server: RedisServer, redis_broker: BrokerFactory
) -> None:
    broker = redis_broker()
    queue = broker.subscribe("run")
    emit_range(broker, "run", 1, 50)
    await broker.flush()
    assert redis_server.kill_clients(broker.client_names()[1]) >= 1
    emit_range(broker, "run", 51, 100)
    in_thread(broker.close, "run")
    assert ids(await read_until_terminal(queue)) == list(range(1, 101))
    assert broker.stats().reader_reconnects >= 1


@pytest.mark.asyncio
async def test_killing_the_producers_connections_between_emits_loses_nothing(
    redis_server: RedisServer, redis_broker: BrokerFactory
) -> None:
    broker = redis_broker()
    queue = broker.subscribe("run")
    emit_range(broker, "run", 1, 5)
    assert redis_server.kill_clients(broker.client_names()[0]) >= 1
    # The pool notices the closed connection when it hands it out, and reconnects.
    emit_range(broker, "run", 6, 10)
    in_thread(broker.close, "run")
    assert ids(await read_until_terminal(queue)) == list(range(1, 11))


@pytest.mark.asyncio
async def test_redis_restarted_mid_run_loses_nothing(own_server: RedisServer) -> None:
    broker = RedisRunBroker(own_server.url, reconnect_delay=(0.01, 0.2))
    try:
        live = broker.subscribe("run")
        emit_range(broker, "run", 1, 20)
        await broker.flush()
        await asyncio.to_thread(own_server.restart)
        emit_range(broker, "run", 21, 40)
        resumed = broker.subscribe("run", last_event_id=10)
        in_thread(broker.close, "run")
        assert ids(await read_until_terminal(live)) == list(range(1, 41))
        assert ids(await read_until_terminal(resumed)) == list(range(11, 41))
        assert broker.stats().reader_reconnects >= 1
    finally:
        await broker.aclose()


@pytest.mark.asyncio
async def test_emit_to_an_unreachable_redis_raises_and_the_subscriber_resumes(
    own_server: RedisServer,
) -> None:
    broker = RedisRunBroker(own_server.url, reconnect_delay=(0.01, 0.2))
    try:
        queue = broker.subscribe("run")
        emit_range(broker, "run", 1, 3)
        await broker.flush()
        await asyncio.to_thread(own_server.stop)
        with pytest.raises(BrokerUnavailable, match="unavailable"):
            emit_range(broker, "run", 4, 4)
        with pytest.raises(BrokerUnavailable):
            broker.subscribe("run")
        assert broker.stats().failed_calls == 2
        await asyncio.to_thread(own_server.start)
        emit_range(broker, "run", 4, 6)
        in_thread(broker.close, "run")
        assert ids(await read_until_terminal(queue)) == [1, 2, 3, 4, 5, 6]
    finally:
        await broker.aclose()


@pytest.mark.asyncio
async def test_emit_to_a_frozen_redis_raises_within_the_socket_timeout(
    own_server: RedisServer,
) -> None:
    broker = RedisRunBroker(own_server.url, socket_timeout=0.5)
    assert own_server.process is not None
    pid = own_server.process.pid
    try:
        emit_range(broker, "run", 1, 1)
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(BrokerUnavailable):
                emit_range(broker, "run", 2, 2)
            assert time.monotonic() - started < 5
        finally:
            os.kill(pid, signal.SIGCONT)
        emit_range(broker, "run", 3, 3)
        # The emit that timed out may or may not have run when Redis woke up (that is what
        # BrokerUnavailable says); the others did, with ids that run on.
        queue = broker.subscribe("run", last_event_id=0)
        in_thread(broker.close, "run")
        items = await read_until_terminal(queue)
        assert ids(items) == list(range(1, len(items)))
        assert [item["n"] for item in items[:-1]] in ([1, 2, 3], [1, 3])
    finally:
        await broker.aclose()


def test_emit_is_safe_from_many_threads_and_ids_stay_1_to_n(redis_server: RedisServer) -> None:
    broker = RedisRunBroker(redis_server.url)
    threads = [
        threading.Thread(target=lambda: [broker.emit("run", {"x": 1}) for _ in range(50)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    broker.close("run")

    async def replay() -> list[dict[str, Any]]:
        try:
            return await read_until_terminal(broker.subscribe("run", last_event_id=0))
        finally:
            await broker.aclose()

    assert ids(asyncio.run(replay())) == list(range(1, 201))


@pytest.mark.asyncio
async def test_a_run_whose_stream_outlived_its_counter_starts_again_at_1(
    redis_server: RedisServer, redis_broker: BrokerFactory
) -> None:
    broker = redis_broker()
    emit_range(broker, "run", 1, 5)
    in_thread(broker.close, "run")
    # The retention TTL expires the two keys one at a time; here the counter went first.
    client = redis_server.client()
    try:
        client.delete(f"{broker.namespace}:m:run")
    finally:
        client.close()
    queue = broker.subscribe("run")
    emit_range(broker, "run", 1, 2)
    in_thread(broker.close, "run")
    assert await read_until_terminal(queue) == [
        {"n": 1, "id": 1},
        {"n": 2, "id": 2},
        {"type": "done"},
    ]
