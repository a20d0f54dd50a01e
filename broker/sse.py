"""Serve a broker run to browsers as Server-Sent Events, for any Starlette or FastAPI app.

Install with the ``runbroker[sse]`` extra. The broker core never imports this module, and this
module never imports the broker package: it works with any object that has the broker's public
``subscription()`` method (``RunBroker`` has it).

What a stream promises:

- It starts with ``retry: <ms>`` (the browser's reconnect delay), sent once the subscription exists,
  so a client that has read that frame is known to be subscribed.
- Each event is one frame: ``id:`` with the event's id (only events that carry an int ``"id"``, that
  is regular run events: never keep-alives, ``gap``, ``overflow`` or ``done``), ``event:`` with its
  ``"type"`` (left out unless the type is a non-empty one-line string that is valid Unicode, so the
  frame then reaches ``onmessage``) and one ``data:`` line with the whole event as ASCII JSON (so no
  payload can break a line). The JSON is strict, as a browser's ``JSON.parse`` wants it: values it
  cannot hold (NaN, infinities, objects) are sent as their ``str()``, see :func:`format_event`.
- A comment ``: keep-alive`` after every ``keepalive_interval`` seconds of silence, with no ``id:``,
  so proxies keep the connection open without moving the browser's ``Last-Event-ID`` cursor.
- Resume: the ``Last-Event-ID`` header, or for a first connection the ``last_event_id`` query
  parameter (the header wins and the parameter is then ignored, since a browser reconnects to the
  same URL), is handed to the broker's replay. A value that is not one decimal integer from 0 to
  18 digits is rejected by :func:`sse_response` with a 400 naming the problem, before anything is
  subscribed (a browser only ever echoes ids this module sent, so this is never a browser's fault).
- ``gap`` (events were evicted before the client came back) and ``overflow`` (this client was too
  slow and was cut off) tell a client to resync; ``done`` ends the run. After ``done`` or
  ``overflow`` the response ends, so a client must close its ``EventSource`` on them, or the browser
  reconnects. A marker has no ``"id"``, which is how it differs from a regular event that happens
  to use the type ``gap``, ``overflow`` or ``done`` (better avoided: browsers cannot tell).
- A client that stops reading is cut off by the broker once it is ``max_backlog`` items behind:
  from then on nothing more is queued for it, so it holds at most that many events plus the
  server's socket buffers; it gets what was queued, then ``overflow``, and the response ends.
- When the client disconnects, the subscription is released at once (not at the next write), and
  every task the response started has ended when the ASGI call returns.
- Setting the optional ``stop`` event ends the response without ``done``, so the browser reconnects
  with ``Last-Event-ID`` (for example to move clients off a server before it shuts down).

Browsers only dispatch named events to listeners registered with ``addEventListener(type)``, so a
page must listen for every type its runs emit, plus ``gap``, ``overflow`` and ``done``.
"""

from __future__ import annotations

import contextlib
import json
import math
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
    "Waitable",
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
# ensure_ascii escapes every non-ASCII character (including lone surrogates, which cannot be
# encoded as UTF-8) and JSON escapes CR and LF, so a payload is always exactly one line.
# allow_nan=False: NaN and Infinity are not JSON, and a browser's JSON.parse rejects them.
_JSON = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False, default=str)


class SubscribableBroker(Protocol):
    """What this module needs from a broker: ``RunBroker`` has it."""

    def subscription(
        self, run_id: Any, last_event_id: int | None = None
    ) -> AbstractAsyncContextManager[AsyncIterable[Mapping[str, Any]]]: ...


class Waitable(Protocol):
    """What ``stop`` must be: ``asyncio.Event`` and ``anyio.Event`` are."""

    def wait(self) -> Awaitable[object]: ...


class InvalidLastEventId(ValueError):
    """The client's ``Last-Event-ID`` header or ``last_event_id`` query parameter is malformed."""


def _is_terminal(item: Mapping[str, Any]) -> bool:
    return "id" not in item and item.get("type") in _TERMINAL_TYPES


def format_event(event: Mapping[str, Any]) -> bytes:
    """Encode one broker item as an SSE frame (see the module docstring for the rules). Never
    raises for a dict: a stream that died on an event would make the browser reconnect, get the
    same event from the replay buffer and die again."""
    lines = []
    event_id = event.get("id")
    if isinstance(event_id, int) and not isinstance(event_id, bool):
        lines.append(f"id: {event_id}")
    name = event.get("type")
    if isinstance(name, str) and _EVENT_NAME.fullmatch(name):
        lines.append(f"event: {name}")
    try:
        data = _JSON.encode(event)
    except (ValueError, TypeError):
        data = _JSON.encode(_strict_json(event, frozenset()))
    lines.append(f"data: {data}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def _strict_json(value: object, enclosing: frozenset[int]) -> object:
    """``value`` with what strict JSON cannot hold made into strings: NaN and infinities and other
    values as ``str()``, integers too long for decimal as ``hex()``, dict keys that are not
    scalars as ``str()``, and a container that contains itself as ``"<circular reference>"``."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, int):
        try:
            int.__repr__(value)
        except ValueError:  # more digits than int-to-str conversion allows
            return hex(value)
        return value
    if not isinstance(value, dict | list | tuple):
        return str(value)
    if id(value) in enclosing:
        return "<circular reference>"
    inside = enclosing | {id(value)}
    if isinstance(value, dict):
        return {_strict_json_key(key): _strict_json(item, inside) for key, item in value.items()}
    return [_strict_json(item, inside) for item in value]


def _strict_json_key(key: object) -> str:
    # Scalar keys are written the way json writes them (True as "true"), the rest as str().
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, int | float):
        scalar = _strict_json(key, frozenset())
        return scalar if isinstance(scalar, str) else _JSON.encode(scalar)
    return str(key)


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
    """Serialises the writes of the event pump and the keep-alive task, remembers when the client
    last got anything, and notices a client that has gone."""

    def __init__(self, send: Send, scope: anyio.CancelScope) -> None:
        self._send = send
        self._scope = scope
        self._lock = anyio.Lock()
        self.last_write = anyio.current_time()
        self.client_gone = False

    def gone(self) -> None:
        """The client disconnected: stop everything the response is doing."""
        self.client_gone = True
        self._scope.cancel()

    async def write(self, chunk: bytes) -> None:
        async with self._lock:
            await self._write_locked(chunk)

    async def keep_alive(self, interval: float) -> None:
        """Write a keep-alive comment whenever nothing was written for ``interval`` seconds."""
        while True:
            await anyio.sleep_until(self.last_write + interval)
            async with self._lock:
                # A frame may have gone out while this task waited for the lock.
                if anyio.current_time() >= self.last_write + interval:
                    await self._write_locked(KEEPALIVE)

    async def _write_locked(self, chunk: bytes) -> None:
        try:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError:
            # ASGI 2.4 servers raise this from send() once the client has gone.
            self.gone()
            return
        self.last_write = anyio.current_time()


class SSEResponse(Response):
    """A streaming response that subscribes to one run when the ASGI server calls it.

    Return it from a Starlette or FastAPI endpoint. It does not read the request: pass the resume
    point as ``last_event_id`` (:func:`sse_response` parses it and answers 400 on bad input).
    Background tasks attached to it (as FastAPI does) run after the stream has ended.
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
        stop: Waitable | None = None,
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
        # client that has seen the first frame is known to be subscribed.
        subscription = self.broker.subscription(self.run_id, last_event_id=self.last_event_id)
        async with subscription as items:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async with anyio.create_task_group() as tg:
                writer = _Writer(send, tg.cancel_scope)

                async def watch_disconnect() -> None:
                    # Servers report a disconnect only through receive(); waiting for the next
                    # write to fail would hold the subscription until the next event or keep-alive.
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    writer.gone()

                async def wait_for_stop(stop: Waitable) -> None:
                    await stop.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_disconnect)
                tg.start_soon(writer.keep_alive, self.keepalive_interval)
                if self.stop is not None:
                    tg.start_soon(wait_for_stop, self.stop)
                await writer.write(format_retry(self.retry_ms))
                async for item in items:
                    await writer.write(format_event(item))
                    if _is_terminal(item):
                        break
                tg.cancel_scope.cancel()

        if not writer.client_gone:
            # A client may leave right after the last frame; that is no error.
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await self.background()


def sse_response(
    conn: HTTPConnection,
    broker: SubscribableBroker,
    run_id: Any,
    *,
    keepalive_interval: float = 15.0,
    retry_ms: int = 3000,
    stop: Waitable | None = None,
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
