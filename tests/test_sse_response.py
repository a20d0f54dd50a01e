"""SSEResponse called directly as an ASGI app, for what uvicorn never does: a server whose
``send()`` raises ``OSError`` once the client is gone (ASGI 2.4), and FastAPI-style background
tasks."""

from __future__ import annotations

import asyncio

import pytest
from sse_support import wait_until
from starlette.background import BackgroundTask
from starlette.types import Message, Scope

from broker import RunBroker
from broker.sse import SSEResponse

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

RUN = "run"
SCOPE: Scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}}


class FakeServer:
    """The server side of one request: the client never disconnects by itself; ``send()`` raises
    ``OSError`` from the ``fail_at``-th body chunk on, as an ASGI 2.4 server does for a gone
    client."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.sent: list[Message] = []
        self.fail_at = fail_at
        self._bodies = 0
        self._never = asyncio.Event()
        self._requested = False

    async def receive(self) -> Message:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._never.wait()
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            self._bodies += 1
            if self.fail_at is not None and self._bodies >= self.fail_at:
                raise OSError("the client has gone")
        self.sent.append(message)

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]


def other_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def test_send_failing_mid_stream_ends_the_response_and_releases_the_subscription() -> None:
    broker = RunBroker()
    # Chunks: retry, event 1, event 2 (fails).
    server = FakeServer(fail_at=3)
    before = other_tasks()
    response = SSEResponse(broker, RUN, keepalive_interval=3600)
    call = asyncio.create_task(response(SCOPE, server.receive, server.send))
    await wait_until(lambda: broker.n_subscribers(RUN) == 1, 30, "the subscribe")
    broker.emit(RUN, {"type": "token", "text": "a"})
    broker.emit(RUN, {"type": "token", "text": "b"})
    await asyncio.wait_for(call, 30)
    assert broker.n_subscribers(RUN) == 0
    assert other_tasks() == before
    # No closing chunk is sent to a client that is gone.
    assert server.bodies() == [
        b"retry: 3000\n\n",
        b'id: 1\nevent: token\ndata: {"type":"token","text":"a","id":1}\n\n',
    ]


async def test_keepalive_failing_ends_the_response_and_releases_the_subscription() -> None:
    broker = RunBroker()
    # Chunks: retry, then the first keep-alive fails.
    server = FakeServer(fail_at=2)
    before = other_tasks()
    response = SSEResponse(broker, RUN, keepalive_interval=0.01)
    await asyncio.wait_for(response(SCOPE, server.receive, server.send), 30)
    assert broker.n_subscribers(RUN) == 0
    assert other_tasks() == before
    assert server.bodies() == [b"retry: 3000\n\n"]


async def test_background_task_runs_after_the_stream_ended() -> None:
    broker = RunBroker()
    broker.emit(RUN, {"type": "token", "text": "a"})
    broker.close(RUN)
    server = FakeServer()
    ran: list[list[bytes]] = []
    response = SSEResponse(broker, RUN, last_event_id=0, keepalive_interval=3600)
    # FastAPI attaches the endpoint's BackgroundTasks this way.
    response.background = BackgroundTask(lambda: ran.append(server.bodies()))
    await asyncio.wait_for(response(SCOPE, server.receive, server.send), 30)
    streamed = [
        b"retry: 3000\n\n",
        b'id: 1\nevent: token\ndata: {"type":"token","text":"a","id":1}\n\n',
        b'event: done\ndata: {"type":"done"}\n\n',
        b"",
    ]
    assert server.bodies() == streamed
    assert ran == [streamed]


async def test_client_gone_right_after_done_is_no_error() -> None:
    broker = RunBroker()
    broker.close(RUN)
    # Chunks: retry, done, the closing empty chunk (fails).
    server = FakeServer(fail_at=3)
    response = SSEResponse(broker, RUN, keepalive_interval=3600)
    await asyncio.wait_for(response(SCOPE, server.receive, server.send), 30)
    assert server.bodies() == [b"retry: 3000\n\n", b'event: done\ndata: {"type":"done"}\n\n']
