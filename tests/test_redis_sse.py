"""``broker.sse`` and the demo serve a ``RedisRunBroker`` unchanged: a real uvicorn server, real
httpx streaming clients, a real ``redis-server``; the producer is another broker instance on
the same namespace, as another worker process would be."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import uuid
from collections.abc import Callable

import httpx
import pytest
from sse_support import LiveServer, Stream, open_stream
from test_sse_e2e import RUN, assert_done, assert_tokens, emit_tokens, http_client, serve, url

from broker.redis import RedisRunBroker
from tests.redis_support import RedisServer

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

__all__ = ["serve"]


async def test_a_run_and_a_reconnect_with_last_event_id_over_sse(
    serve: Callable[..., LiveServer], redis_server: RedisServer
) -> None:
    namespace = f"sse-{uuid.uuid4().hex}"
    consumer = RedisRunBroker(redis_server.url, namespace=namespace)
    producer = RedisRunBroker(redis_server.url, namespace=namespace)
    server = serve(consumer, retry_ms=1234)
    try:
        async with http_client() as client:
            response = await client.send(client.build_request("GET", url(server)), stream=True)
            first = Stream(response)
            assert (await first.next()).fields == [("retry", "1234")]
            emit_tokens(producer, 1, 10)
            assert_tokens([await first.next() for _ in range(7)], 1, 7)
            await first.close()
            emit_tokens(producer, 11, 20)  # while no client is connected
            second = await open_stream(client, url(server), headers={"Last-Event-ID": "7"})
            assert_tokens([await second.next() for _ in range(13)], 8, 20)
            emit_tokens(producer, 21, 25)
            producer.close(RUN)
            frames = await second.rest()
        assert_tokens(frames[:-1], 21, 25)
        assert_done(frames[-1])
    finally:
        server.call(consumer.aclose)
        await producer.aclose()


async def test_the_demo_command_with_redis(redis_server: RedisServer) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "broker.demo",
        "--port",
        "0",
        "--redis",
        redis_server.url,
        "--redis-namespace",
        f"demo-{uuid.uuid4().hex}",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        found = re.fullmatch(r"runbroker demo: open (http://127\.0\.0\.1:\d+/)\n", line)
        assert found, line
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert line == f"runbroker demo: runs kept in Redis at {redis_server.url}\n"
        async with httpx.AsyncClient(base_url=found[1], timeout=30.0) as http:
            response = await http.post("/runs?events=5&interval_ms=0")
            assert response.status_code == 201, response.text
            run_id = response.json()["run_id"]
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
