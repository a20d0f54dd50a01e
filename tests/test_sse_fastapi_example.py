"""The README's FastAPI example (``sse_fastapi_example.py``, shown there verbatim) served by a real
uvicorn and read with httpx: a first connection, a resume with ``Last-Event-ID``, and a 400."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sse_fastapi_example import app, broker
from sse_support import LiveServer, open_stream, wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]


@pytest.fixture
def server() -> Iterator[LiveServer]:
    with LiveServer(app) as live:
        yield live


def emit(run_id: str, first: int, last: int) -> None:
    for n in range(first, last + 1):
        broker.emit(run_id, {"type": "token", "text": f"t{n}"})


async def test_stream_resumes_after_last_event_id(server: LiveServer) -> None:
    run = "fastapi-resume"
    events = f"{server.url}/runs/{run}/events"
    emit(run, 1, 3)
    async with httpx.AsyncClient(timeout=30.0) as client:
        first = await open_stream(client, f"{events}?last_event_id=0")
        assert [(await first.next()).json() for _ in range(3)] == [
            {"type": "token", "text": f"t{n}", "id": n} for n in range(1, 4)
        ]
        await first.close()
        await wait_until(lambda: broker.n_subscribers(run) == 0, 1.0, "the unsubscribe")
        emit(run, 4, 6)
        second = await open_stream(client, events, headers={"Last-Event-ID": "4"})
        broker.close(run)
        frames = await second.rest()
    assert [(frame.id, frame.event) for frame in frames] == [
        (5, "token"),
        (6, "token"),
        (None, "done"),
    ]


async def test_malformed_last_event_id_is_a_400(server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=30.0) as client:
        response = await client.get(
            f"{server.url}/runs/fastapi-bad/events", headers={"Last-Event-ID": "x"}
        )
    assert response.status_code == 400
    assert "Last-Event-ID header must be a non-negative decimal integer" in response.text
    assert broker.n_subscribers("fastapi-bad") == 0
