"""End-to-end tests of broker.sse: a real uvicorn server, real httpx streaming clients.

Each test drives the broker itself (emit and close from the test), so what a client must receive is
known exactly and nothing depends on timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from sse_support import Frame, LiveServer, Stream, open_stream, wait_until
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker import RunBroker
from broker.sse import sse_response

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

RUN = "run-1"


def sse_app(broker: RunBroker, **options: Any) -> Starlette:
    async def events(request: Request) -> Response:
        return sse_response(request, broker, request.path_params["run_id"], **options)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        broker.bind_loop(asyncio.get_running_loop())
        yield

    return Starlette(routes=[Route("/runs/{run_id}/events", events)], lifespan=lifespan)


@pytest.fixture
def serve() -> Iterator[Callable[..., LiveServer]]:
    """``serve(broker, **sse_options)`` starts a server streaming that broker's runs."""
    with ExitStack() as stack:

        def start(broker: RunBroker, **options: Any) -> LiveServer:
            return stack.enter_context(LiveServer(sse_app(broker, **options)))

        yield start


def http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=None))


def url(server: LiveServer, query: str = "") -> str:
    return f"{server.url}/runs/{RUN}/events{query}"


def emit_tokens(broker: RunBroker, first: int, last: int) -> None:
    for n in range(first, last + 1):
        broker.emit(RUN, {"type": "token", "text": f"t{n}"})


def assert_tokens(frames: list[Frame], first: int, last: int) -> None:
    """Frames are exactly the token events first..last, in order, each with its id."""
    assert [frame.id for frame in frames] == list(range(first, last + 1))
    for n, frame in zip(range(first, last + 1), frames, strict=True):
        assert frame.event == "token"
        assert frame.json() == {"type": "token", "text": f"t{n}", "id": n}


def assert_done(frame: Frame) -> None:
    assert frame.fields == [("event", "done"), ("data", '{"type":"done"}')]


async def test_full_run_arrives_in_order_then_done_ends_the_stream(
    serve: Callable[..., LiveServer],
) -> None:
    broker = RunBroker()
    server = serve(broker, retry_ms=1234)
    async with http_client() as client:
        response = await client.send(client.build_request("GET", url(server)), stream=True)
        assert response.headers["cache-control"] == "no-cache"
        stream = Stream(response)
        assert (await stream.next()).fields == [("retry", "1234")]
        emit_tokens(broker, 1, 50)
        broker.close(RUN)
        frames = await stream.rest()
    assert_tokens(frames[:-1], 1, 50)
    assert_done(frames[-1])


async def test_reconnect_with_last_event_id_gets_exactly_the_missing_events(
    serve: Callable[..., LiveServer],
) -> None:
    broker = RunBroker()
    server = serve(broker)
    async with http_client() as client:
        emit_tokens(broker, 1, 10)
        first = await open_stream(client, url(server, "?last_event_id=0"))
        assert_tokens([await first.next() for _ in range(7)], 1, 7)
        await first.close()
        emit_tokens(broker, 11, 20)  # while no client is connected
        # Like a browser: same URL (with the first connection's query), Last-Event-ID header.
        second = await open_stream(
            client, url(server, "?last_event_id=0"), headers={"Last-Event-ID": "7"}
        )
        assert_tokens([await second.next() for _ in range(13)], 8, 20)
        emit_tokens(broker, 21, 25)
        broker.close(RUN)
        frames = await second.rest()
    assert_tokens(frames[:-1], 21, 25)
    assert_done(frames[-1])


async def test_closed_run_replays_from_last_event_id_then_done(
    serve: Callable[..., LiveServer],
) -> None:
    broker = RunBroker()
    server = serve(broker)
    emit_tokens(broker, 1, 10)
    broker.close(RUN)
    async with http_client() as client:
        stream = await open_stream(client, url(server, "?last_event_id=4"))
        frames = await stream.rest()
    assert_tokens(frames[:-1], 5, 10)
    assert_done(frames[-1])


async def test_evicted_resume_point_gets_a_gap_marker_without_id(
    serve: Callable[..., LiveServer],
) -> None:
    broker = RunBroker(replay_size=5)
    server = serve(broker)
    emit_tokens(broker, 1, 20)
    async with http_client() as client:
        stream = await open_stream(client, url(server), headers={"Last-Event-ID": "3"})
        gap = await stream.next()
        assert gap.fields == [
            ("event", "gap"),
            ("data", '{"type":"gap","last_event_id":3,"first_available_id":16}'),
        ]
        assert_tokens([await stream.next() for _ in range(5)], 16, 20)
        broker.close(RUN)
        frames = await stream.rest()
    assert len(frames) == 1
    assert_done(frames[0])


async def test_client_that_disconnects_is_unsubscribed_at_once_and_leaves_no_task(
    serve: Callable[..., LiveServer],
) -> None:
    broker = RunBroker()
    # A long keep-alive interval: the release must not wait for the next write to fail.
    server = serve(broker, keepalive_interval=3600)
    baseline = server.n_tasks()
    async with http_client() as client:
        streams = [await open_stream(client, url(server)) for _ in range(5)]
        assert broker.n_subscribers(RUN) == 5
        emit_tokens(broker, 1, 3)
        for stream in streams:
            assert_tokens([await stream.next() for _ in range(3)], 1, 3)
        assert server.n_tasks() > baseline
        for stream in streams:
            await stream.close()
        await wait_until(lambda: broker.n_subscribers(RUN) == 0, 1.0, "the unsubscribes")
        await wait_until(lambda: server.n_tasks() == baseline, 1.0, "the tasks to end")
    assert not broker.is_done(RUN)


async def test_200_concurrent_clients_each_receive_every_event(
    serve: Callable[..., LiveServer],
) -> None:
    broker = RunBroker()
    server = serve(broker)
    async with http_client() as client:
        streams = await asyncio.gather(*(open_stream(client, url(server)) for _ in range(200)))
        assert broker.n_subscribers(RUN) == 200
        emit_tokens(broker, 1, 100)
        broker.close(RUN)
        results = await asyncio.gather(*(stream.rest() for stream in streams))
    for frames in results:
        assert_tokens(frames[:-1], 1, 100)
        assert_done(frames[-1])
    assert broker.n_subscribers(RUN) == 0


async def test_client_that_stops_reading_is_cut_off_with_bounded_backlog(
    serve: Callable[..., LiveServer],
) -> None:
    max_backlog = 16
    broker = RunBroker(replay_size=8, max_backlog=max_backlog)
    server = serve(broker)
    blob = "x" * 65536
    async with http_client() as client:
        stalled = await open_stream(client, url(server))
        healthy = await open_stream(client, url(server))
        assert broker.n_subscribers(RUN) == 2
        # Emission is paced by the healthy reader, which is therefore never behind. The stalled one
        # fills the socket buffers, then its broker queue, then must be cut off.
        emitted = 0
        while broker.n_subscribers(RUN) == 2:
            assert emitted < 2000, "the client that stopped reading was never cut off"
            emitted += 1
            broker.emit(RUN, {"type": "blob", "data": blob})
            assert (await healthy.next()).id == emitted
        cut_at = emitted
        for _ in range(20):
            emitted += 1
            broker.emit(RUN, {"type": "blob", "data": blob})
            assert (await healthy.next()).id == emitted
        # The broker let the stalled client go: it queues nothing more for it, so what the server
        # holds for it stays at most max_backlog events however long the run goes on.
        stats = broker.stats()
        assert (stats.subscribers, stats.overflowed) == (1, 1)
        assert broker.n_subscribers(RUN) == 1
        broker.close(RUN)
        healthy_rest = await healthy.rest()
        stalled_frames = await stalled.rest()
    assert broker.stats().subscribers == 0
    assert len(healthy_rest) == 1
    assert_done(healthy_rest[0])
    # The stalled client gets an unbroken prefix, then overflow as the very last frame.
    *events, overflow = stalled_frames
    delivered = [frame.id for frame in events]
    assert delivered == list(range(1, len(delivered) + 1))
    assert len(delivered) <= cut_at
    assert overflow.fields == [
        ("event", "overflow"),
        ("data", f'{{"type":"overflow","limit":{max_backlog}}}'),
    ]


async def test_keepalive_is_a_comment_without_id(serve: Callable[..., LiveServer]) -> None:
    broker = RunBroker()
    server = serve(broker, keepalive_interval=0.05)
    async with http_client() as client:
        stream = await open_stream(client, url(server))
        keepalive = await stream.next()
        assert keepalive == Frame(fields=[], comments=["keep-alive"])
        emit_tokens(broker, 1, 1)
        frame = await stream.next()
        while frame.comments:
            assert frame == Frame(fields=[], comments=["keep-alive"])
            frame = await stream.next()
        assert_tokens([frame], 1, 1)
        assert await stream.next() == Frame(fields=[], comments=["keep-alive"])
        broker.close(RUN)
        frames = await stream.rest()
    assert all(frame == keepalive for frame in frames[:-1])
    assert_done(frames[-1])


@pytest.mark.parametrize(
    ("headers", "query", "message"),
    [
        # The parsing itself is covered in test_sse_format; these check what reaches the client.
        ({"Last-Event-ID": "abc"}, "", "Last-Event-ID header must be a non-negative decimal"),
        ({"Last-Event-ID": "1" * 19}, "", "at most 18 digits"),
        ({}, "?last_event_id=5%20", "last_event_id query parameter must be a non-negative"),
        ({}, "?last_event_id=1&last_event_id=2", "last_event_id query parameter given 2 times"),
    ],
)
async def test_bad_resume_point_is_a_400_and_subscribes_nothing(
    serve: Callable[..., LiveServer], headers: dict[str, str], query: str, message: str
) -> None:
    broker = RunBroker()
    server = serve(broker)
    emit_tokens(broker, 1, 4)
    async with http_client() as client:
        response = await client.get(url(server, query), headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")
    assert message in response.text
    assert broker.stats().subscribers == 0


async def test_header_wins_over_the_first_connections_query(
    serve: Callable[..., LiveServer],
) -> None:
    broker = RunBroker()
    server = serve(broker)
    emit_tokens(broker, 1, 4)
    async with http_client() as client:
        # A malformed query is not even looked at when the header is there.
        stream = await open_stream(
            client, url(server, "?last_event_id=bogus"), headers={"Last-Event-ID": "3"}
        )
        assert_tokens([await stream.next()], 4, 4)
        await stream.close()


async def test_repeated_last_event_id_header_is_rejected(serve: Callable[..., LiveServer]) -> None:
    broker = RunBroker()
    server = serve(broker)
    async with http_client() as client:
        response = await client.get(
            url(server), headers=[("Last-Event-ID", "1"), ("Last-Event-ID", "2")]
        )
    assert response.status_code == 400
    assert response.text == "Last-Event-ID header given 2 times; give it once"
