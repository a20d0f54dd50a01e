"""Serve a broker run to browsers as Server-Sent Events, for any Starlette or FastAPI app.

Install with the ``runbroker[sse]`` extra. The broker core never imports this module, and this
module never imports the core: it works with any object that has the broker's ``subscription()``
method.

What a stream promises:

- It starts with ``retry: <ms>`` (the browser's reconnect delay), sent once the subscription exists,
  so a client that has read the response headers is already subscribed.
- Each event is one frame: ``id:`` with the event's id (only events that carry an int ``"id"``, that
  is regular run events: never keep-alives, ``gap``, ``overflow`` or ``done``), ``event:`` with its
  ``"type"`` (left out unless the type is a non-empty one-line string that is valid Unicode, so the
  frame then reaches ``onmessage``) and one ``data:`` line with the whole event as ASCII JSON (so no
  payload can break a line).
  Values JSON cannot encode are sent as their ``str()``.
- A comment ``: keep-alive`` after every ``keepalive_interval`` seconds of silence, with no ``id:``,
  so proxies keep the connection open without moving the browser's ``Last-Event-ID`` cursor.
- Resume: the ``Last-Event-ID`` header, or for a first connection the ``last_event_id`` query
  parameter (the header wins and the parameter is then ignored, since a browser reconnects to the
  same URL), is handed to the broker's replay. Bad values are rejected with a 400 by
  :func:`sse_response` before anything is subscribed.
- ``gap`` (events were evicted before the client came back) and ``overflow`` (this client was too
  slow and was cut off) tell a client to resync; ``done`` ends the run. After ``done`` or
  ``overflow`` the response ends, so a client must close its ``EventSource`` on them, or the browser
  reconnects. A marker has no ``"id"``, which is how it differs from a regular event that happens
  to use the type ``gap``, ``overflow`` or ``done`` (better avoided: browsers cannot tell).
- When the client disconnects, the subscription is released at once (not at the next write), and
  every task the response started has ended when the ASGI call returns.
- Setting the optional ``stop`` event ends the response without ``done``, so the browser reconnects
  with ``Last-Event-ID`` (for example to move clients off a server before it shuts down).

Browsers only dispatch named events to listeners registered with ``addEventListener(type)``, so a
page must listen for every type its runs emit, plus ``gap``, ``overflow`` and ``done``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterable, Awaitable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import anyio
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

__all__ = [
    "KEEPALIVE",
    "InvalidLastEventId",
    "SSEResponse",
    "SubscribableBroker",
    "format_event",
    "format_retry",
    "parse_last_event_id",
    "sse_response",
]

KEEPALIVE = b": keep-alive\n\n"

# Terminal markers carry no "id"; a regular event that happens to use one of these types has one and
# must not end the stream.
_TERMINAL_TYPES = frozenset({"done", "overflow"})
# A line break would end the field early, and a lone surrogate cannot be written as UTF-8.
_EVENT_NAME = re.compile(r"[^\r\n\ud800-\udfff]+")
# At most 18 digits keeps the id below 2**63, which every client can store.
_LAST_EVENT_ID = re.compile(r"[0-9]{1,18}")


class SubscribableBroker(Protocol):
    """What this module needs from a broker: ``RunBroker`` has it."""

    def subscription(
        self, run_id: Any, last_event_id: int | None = None
    ) -> AbstractAsyncContextManager[AsyncIterable[Mapping[str, Any]]]: ...


class _Waitable(Protocol):
    def wait(self) -> Awaitable[object]: ...


class InvalidLastEventId(ValueError):
    """The client's ``Last-Event-ID`` header or ``last_event_id`` query parameter is malformed."""


def format_event(event: Mapping[str, Any]) -> bytes:
    """Encode one broker item as an SSE frame (see the module docstring for the rules)."""
    lines = []
    event_id = event.get("id")
    if isinstance(event_id, int) and not isinstance(event_id, bool):
        lines.append(f"id: {event_id}")
    name = event.get("type")
    if isinstance(name, str) and _EVENT_NAME.fullmatch(name):
        lines.append(f"event: {name}")
    # ensure_ascii escapes every non-ASCII character (including lone surrogates, which cannot be
    # encoded as UTF-8), and JSON escapes CR and LF, so the payload is always exactly one line.
    data = json.dumps(event, ensure_ascii=True, separators=(",", ":"), default=str)
    lines.append(f"data: {data}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def format_retry(retry_ms: int) -> bytes:
    """The frame that sets the browser's reconnect delay."""
    return f"retry: {retry_ms}\n\n".encode("ascii")


def parse_last_event_id(conn: HTTPConnection) -> int | None:
    """The client's resume point: the ``Last-Event-ID`` header, else the ``last_event_id`` query
    parameter, else None. Raises :class:`InvalidLastEventId` unless the value is a non-negative
    decimal integer of at most 18 ASCII digits given once."""
    values = conn.headers.getlist("last-event-id")
    source = "Last-Event-ID header"
    if not values:
        values = conn.query_params.getlist("last_event_id")
        source = "last_event_id query parameter"
    if not values:
        return None
    if len(values) > 1:
        raise InvalidLastEventId(f"{source} given {len(values)} times; give it once")
    value = values[0]
    if not _LAST_EVENT_ID.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidLastEventId(
            f"{source} must be a non-negative decimal integer of at most 18 digits, got {shown!r}"
        )
    return int(value)


class _Writer:
    """Serialises writes from the event pump and the keep-alive task, and remembers when the client
    last got anything."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._lock = anyio.Lock()
        self.last_write = anyio.current_time()

    async def write(self, chunk: bytes) -> None:
        async with self._lock:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
            self.last_write = anyio.current_time()


class SSEResponse(Response):
    """A streaming response that subscribes to one run when the ASGI server calls it.

    Return it from a Starlette or FastAPI endpoint. It does not read the request: pass the resume
    point as ``last_event_id`` (:func:`sse_response` parses it and answers 400 on bad input).
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        broker: SubscribableBroker,
        run_id: Any,
        *,
        last_event_id: int | None = None,
        keepalive_interval: float = 15.0,
        retry_ms: int = 3000,
        stop: _Waitable | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if last_event_id is not None and last_event_id < 0:
            raise ValueError(f"last_event_id must be >= 0, got {last_event_id}")
        if not keepalive_interval > 0:
            raise ValueError(f"keepalive_interval must be > 0, got {keepalive_interval}")
        if retry_ms < 0:
            raise ValueError(f"retry_ms must be >= 0, got {retry_ms}")
        self.broker = broker
        self.run_id = run_id
        self.last_event_id = last_event_id
        self.keepalive_interval = keepalive_interval
        self.retry_ms = retry_ms
        self.stop = stop
        self.status_code = 200
        self.background = None
        # no-cache stops proxies and browsers from replaying a stale stream; X-Accel-Buffering stops
        # nginx from holding frames back until its buffer fills.
        self.init_headers(
            {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Subscribe before the headers go out: a failing subscribe is still a clean 500, and a
        # client that has seen the headers is known to be subscribed.
        subscription = self.broker.subscription(self.run_id, last_event_id=self.last_event_id)
        async with subscription as items:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            writer = _Writer(send)
            client_gone = False

            async with anyio.create_task_group() as tg:

                async def watch_disconnect() -> None:
                    nonlocal client_gone
                    # Servers report a disconnect only through receive(); waiting for the next
                    # write to fail would hold the subscription until the next event or keep-alive.
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    client_gone = True
                    tg.cancel_scope.cancel()

                async def keep_alive() -> None:
                    while True:
                        await anyio.sleep_until(writer.last_write + self.keepalive_interval)
                        if anyio.current_time() >= writer.last_write + self.keepalive_interval:
                            await writer.write(KEEPALIVE)

                async def wait_for_stop(stop: _Waitable) -> None:
                    await stop.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_disconnect)
                tg.start_soon(keep_alive)
                if self.stop is not None:
                    tg.start_soon(wait_for_stop, self.stop)
                try:
                    await writer.write(format_retry(self.retry_ms))
                    async for item in items:
                        await writer.write(format_event(item))
                        if item.get("type") in _TERMINAL_TYPES and "id" not in item:
                            break
                except OSError:
                    # ASGI 2.4 servers raise this from send() once the client has gone.
                    client_gone = True
                tg.cancel_scope.cancel()

        if not client_gone:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def sse_response(
    conn: HTTPConnection,
    broker: SubscribableBroker,
    run_id: Any,
    *,
    keepalive_interval: float = 15.0,
    retry_ms: int = 3000,
    stop: _Waitable | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The SSE stream of ``run_id`` for this request, resumed from its ``Last-Event-ID``; or a 400
    plain-text response naming the problem when that header (or query parameter) is malformed."""
    try:
        last_event_id = parse_last_event_id(conn)
    except InvalidLastEventId as exc:
        return PlainTextResponse(str(exc), status_code=400)
    return SSEResponse(
        broker,
        run_id,
        last_event_id=last_event_id,
        keepalive_interval=keepalive_interval,
        retry_ms=retry_ms,
        stop=stop,
        headers=headers,
    )
