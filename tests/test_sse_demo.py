"""End-to-end tests of the demo app (broker.demo) with a real server and httpx clients."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from sse_support import LiveServer, open_stream

from broker.demo.app import create_app

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

RUN_EVENT_TYPES = {"status", "token", "tool_call", "tool_result"}


@pytest.fixture
def server() -> Iterator[LiveServer]:
    with LiveServer(create_app()) as live:
        yield live


@pytest_asyncio.fixture
async def client(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        yield http


async def start_run(client: httpx.AsyncClient, query: str) -> str:
    response = await client.post(f"/runs?{query}")
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run_id"]
    return run_id


async def test_page_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert "new EventSource(" in response.text


async def test_a_whole_run_arrives_in_order(client: httpx.AsyncClient) -> None:
    run_id = await start_run(client, "events=60&interval_ms=0")
    stream = await open_stream(client, f"/runs/{run_id}/events?last_event_id=0")
    *events, done = await stream.rest()
    assert [frame.id for frame in events] == list(range(1, 61))
    assert {frame.event for frame in events} <= RUN_EVENT_TYPES
    assert all(frame.json()["type"] == frame.event for frame in events)
    assert done.event == "done"
    status = (await client.get(f"/runs/{run_id}")).json()
    assert status == {"events": 60, "done": True, "subscribers": 0}


async def test_drop_ends_streams_without_done_and_resume_continues(
    client: httpx.AsyncClient,
) -> None:
    run_id = await start_run(client, "events=40&interval_ms=1&pause_after=15")
    events_url = f"/runs/{run_id}/events?last_event_id=0"
    first = await open_stream(client, events_url)
    assert [(await first.next()).id for _ in range(15)] == list(range(1, 16))
    dropped = await client.post(f"/runs/{run_id}/drop")
    assert dropped.json() == {"dropped": 1, "done": False}
    assert await first.rest() == []
    second = await open_stream(client, events_url, headers={"Last-Event-ID": "15"})
    await client.post(f"/runs/{run_id}/resume")
    *events, done = await second.rest()
    assert [frame.id for frame in events] == list(range(16, 41))
    assert done.event == "done"


@pytest.mark.parametrize(
    "query",
    ["events=0", "events=x", "events=" + "9" * 5000, "interval_ms=-1", "pause_after=1.5"],
)
async def test_bad_run_parameters_are_rejected(client: httpx.AsyncClient, query: str) -> None:
    response = await client.post(f"/runs?{query}")
    assert response.status_code == 400
    assert "must be an integer from" in response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", ""), ("GET", "/events"), ("POST", "/drop"), ("POST", "/resume")],
)
async def test_unknown_run_is_404(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, f"/runs/nosuchrun{path}")
    assert response.status_code == 404
    assert "no run 'nosuchrun'" in response.text


async def test_the_one_command_serves_the_demo_on_loopback() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "broker.demo",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        found = re.fullmatch(r"runbroker demo: open (http://127\.0\.0\.1:\d+/)\n", line)
        assert found, line
        async with httpx.AsyncClient(base_url=found[1], timeout=30.0) as http:
            assert "new EventSource(" in (await http.get("/")).text
            run_id = await start_run(http, "events=5&interval_ms=0")
            stream = await open_stream(http, f"/runs/{run_id}/events?last_event_id=0")
            *events, done = await stream.rest()
        assert [frame.id for frame in events] == [1, 2, 3, 4, 5]
        assert done.event == "done"
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
