"""Support for the SSE tests: a real uvicorn server in a thread and a strict SSE frame reader.

The timeouts here only stop a broken test from hanging; they are generous because the machine the
tests run on may be busy, and no verdict depends on them while the code works.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import httpx
import uvicorn
from starlette.types import ASGIApp

T = TypeVar("T")


class LiveServer:
    """Serve ``app`` with uvicorn on a free loopback port, in a thread, for the ``with`` block."""

    def __init__(self, app: ASGIApp) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Binding here, not inside uvicorn, means the port is ours before the thread starts.
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            app,
            lifespan="on",
            log_level="warning",
            # A stream the test forgot to close must not hang the teardown.
            timeout_graceful_shutdown=2,
        )
        # uvicorn (>= 0.29) installs signal handlers only when it runs in the main thread, so this
        # server leaves pytest's Ctrl-C handling alone.
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="uvicorn", daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def _serve(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            await self.server.serve(sockets=[self._sock])

        asyncio.run(main())

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
        assert not self._thread.is_alive(), "uvicorn did not stop"

    def call(self, factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine on the server's loop and return its result."""
        assert self.loop is not None, "the app's lifespan did not record its loop"
        return asyncio.run_coroutine_threadsafe(factory(), self.loop).result(timeout=30)

    def n_tasks(self) -> int:
        """How many tasks the server's loop has, not counting the one asking."""

        async def count() -> int:
            return len(asyncio.all_tasks()) - 1

        return self.call(count)


@dataclass
class Frame:
    """One SSE block: its fields in order and its comment lines (without the colon)."""

    fields: list[tuple[str, str]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        values = [value for key, value in self.fields if key == name]
        assert len(values) <= 1, f"field {name!r} repeated in {self}"
        return values[0] if values else None

    @property
    def id(self) -> int | None:
        value = self.get("id")
        return None if value is None else int(value)

    @property
    def event(self) -> str | None:
        return self.get("event")

    def json(self) -> Any:
        data = self.get("data")
        assert data is not None, f"no data in {self}"
        return json.loads(data)


def parse_block(block: str) -> Frame:
    frame = Frame()
    for line in block.split("\n"):
        if line.startswith(":"):
            frame.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        frame.fields.append((name, value.removeprefix(" ")))
    return frame


async def read_frames(response: httpx.Response) -> AsyncGenerator[Frame, None]:
    """The frames of a streaming response. Stricter than a browser: the server must use LF only
    and must not end the stream inside a frame."""
    assert response.headers["content-type"].startswith("text/event-stream")
    buffer = b""
    async for chunk in response.aiter_raw():
        assert b"\r" not in chunk, "the server writes LF line ends only"
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            yield parse_block(block.decode("utf-8"))
    assert buffer == b"", f"stream ended inside a frame: {buffer!r}"


class Stream:
    """An open SSE request: ``await stream.next()`` reads one frame."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._frames = read_frames(response)

    async def next(self, timeout: float = 30.0) -> Frame:
        return await asyncio.wait_for(anext(self._frames), timeout)

    async def rest(self, timeout: float = 60.0) -> list[Frame]:
        """Every frame until the server ends the response."""

        async def collect() -> list[Frame]:
            return [frame async for frame in self._frames]

        return await asyncio.wait_for(collect(), timeout)

    async def close(self) -> None:
        await self._frames.aclose()
        await self.response.aclose()


async def open_stream(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> Stream:
    """Open an SSE stream and read its first frame, which must be the ``retry:`` frame: once it
    has arrived the server has subscribed this client."""
    response = await client.send(client.build_request("GET", url, headers=headers), stream=True)
    assert response.status_code == 200, response.status_code
    stream = Stream(response)
    first = await stream.next()
    assert first.get("retry") is not None and len(first.fields) == 1, first
    return stream


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)
