"""The demo app: simulated agent runs, streamed over SSE to a one-file page.

Endpoints (all but the first two exist for the page and for tests):

- ``GET /``: the page (``index.html``); ``/?run=<id>`` watches an existing run.
- ``POST /runs?events=120&interval_ms=60&pause_after=K``: start a run, answer ``{"run_id": ...}``.
  A worker thread emits ``events`` events (status, tokens, tool calls and their results) about
  ``interval_ms`` apart (a tool call takes ten times that to return), then closes the run. With
  ``pause_after`` the worker stops after event K until ``POST /runs/<id>/resume``, so a test can
  act mid-run for sure.
- ``GET /runs/<id>/events``: the SSE stream (:mod:`broker.sse`).
- ``GET /runs/<id>``: ``{"events", "done", "subscribers"}``.
- ``POST /runs/<id>/drop``: end every open stream of the run without ``done``, as a dropped network
  connection would; browsers then reconnect with ``Last-Event-ID``.
- ``POST /runs/<id>/resume``: let a paused run go on.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from itertools import cycle, islice
from typing import TYPE_CHECKING, Any, TypeAlias

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from broker import RunBroker
from broker.sse import sse_response

if TYPE_CHECKING:
    from broker.redis import RedisRunBroker

    AnyBroker: TypeAlias = RunBroker | RedisRunBroker
else:
    AnyBroker: TypeAlias = Any

MAX_EVENTS = 100_000
MAX_INTERVAL_MS = 10_000
# Each live run is a thread; the demo listens on loopback, but a stuck client loop should not be
# able to start threads without end.
MAX_LIVE_RUNS = 64

_ANSWER = (
    "Let me look into that. The broker keeps a short replay buffer per run, so a browser that "
    "reconnects sends the id of the last event it saw and gets exactly what it missed, then the "
    "live events, with nothing lost and nothing twice. Slow clients are cut off with an overflow "
    "marker instead of growing the server's memory, and a finished run ends with done."
)

_TOOLS: list[tuple[str, dict[str, Any], str]] = [
    ("search_docs", {"query": "EventSource Last-Event-ID"}, "3 results: WHATWG HTML 9.2, MDN, RFC"),
    ("run_python", {"code": "sum(range(10))"}, "45"),
    ("read_file", {"path": "README.md"}, "# runbroker\n\nA thread-to-asyncio run event broker."),
]


def _agent_script(rng: random.Random) -> Iterator[tuple[dict[str, Any], float]]:
    """An endless plausible agent transcript: (event, how many intervals to wait after it)."""
    words = cycle(_ANSWER.split())
    yield {"type": "status", "text": "thinking"}, 3.0
    while True:
        for _ in range(rng.randint(12, 30)):
            yield {"type": "token", "text": next(words) + " "}, 1.0
        name, args, result = rng.choice(_TOOLS)
        yield {"type": "tool_call", "name": name, "args": args}, 10.0
        yield {"type": "tool_result", "name": name, "result": result}, 1.0


@dataclass
class _Run:
    total: int
    resume: threading.Event = field(default_factory=threading.Event)
    # time.monotonic() when the worker closed the run; written by the worker thread only.
    closed_at: float | None = None


def _simulate(
    broker: AnyBroker,
    run_id: str,
    run: _Run,
    interval_s: float,
    pause_after: int,
    shutdown: threading.Event,
) -> None:
    rng = random.Random(run_id)
    try:
        for n, (event, pace) in enumerate(islice(_agent_script(rng), run.total), start=1):
            broker.emit(run_id, event)
            if n == pause_after:
                run.resume.wait()
            if shutdown.wait(interval_s * pace * rng.uniform(0.5, 1.5)):
                return
    finally:
        broker.close(run_id)
        run.closed_at = time.monotonic()


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # The length check keeps int() away from huge digit strings.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9 and low <= int(raw) <= high):
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return int(raw)


class _Demo:
    """The app's state and endpoints. Everything but ``_Run.closed_at`` is touched on the loop
    thread only."""

    def __init__(
        self,
        broker: AnyBroker,
        *,
        keepalive_interval: float,
        retry_ms: int,
        retention_seconds: float,
        max_runs: int,
    ) -> None:
        self.broker = broker
        self.keepalive_interval = keepalive_interval
        self.retry_ms = retry_ms
        self.retention_seconds = retention_seconds
        self.max_runs = max_runs
        self.runs: OrderedDict[str, _Run] = OrderedDict()
        # Set by /drop to end the run's open streams; streams opened later get a fresh event.
        self.stops: dict[str, asyncio.Event] = {}
        self.shutdown = threading.Event()
        self.page = files("broker.demo").joinpath("index.html").read_text(encoding="utf-8")

    def _run(self, request: Request) -> tuple[str, _Run] | Response:
        run_id: str = request.path_params["run_id"]
        run = self.runs.get(run_id)
        expired = (
            run is not None
            and run.closed_at is not None
            and time.monotonic() - run.closed_at > self.retention_seconds
        )
        if run is None or expired:
            return PlainTextResponse(f"no run {run_id!r} (unknown or expired)", status_code=404)
        return run_id, run

    async def index(self, request: Request) -> Response:
        return HTMLResponse(self.page, headers={"Cache-Control": "no-cache"})

    async def start_run(self, request: Request) -> Response:
        try:
            total = _int_param(request, "events", 120, 1, MAX_EVENTS)
            interval_ms = _int_param(request, "interval_ms", 60, 0, MAX_INTERVAL_MS)
            # 0: no pause (event numbers start at 1).
            pause_after = _int_param(request, "pause_after", 0, 0, MAX_EVENTS)
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        if sum(run.closed_at is None for run in self.runs.values()) >= MAX_LIVE_RUNS:
            return PlainTextResponse("too many live runs; wait for one to finish", status_code=429)
        run_id = uuid.uuid4().hex[:12]
        run = _Run(total)
        self.runs[run_id] = run
        while len(self.runs) > self.max_runs:
            old_id, _ = self.runs.popitem(last=False)
            self.stops.pop(old_id, None)
        threading.Thread(
            target=_simulate,
            args=(self.broker, run_id, run, interval_ms / 1000, pause_after, self.shutdown),
            name=f"demo-run-{run_id}",
            daemon=True,
        ).start()
        return JSONResponse({"run_id": run_id, "events": total}, status_code=201)

    async def events(self, request: Request) -> Response:
        found = self._run(request)
        if isinstance(found, Response):
            return found
        run_id, _ = found
        return sse_response(
            request,
            self.broker,
            run_id,
            keepalive_interval=self.keepalive_interval,
            retry_ms=self.retry_ms,
            stop=self.stops.setdefault(run_id, asyncio.Event()),
        )

    async def status(self, request: Request) -> Response:
        found = self._run(request)
        if isinstance(found, Response):
            return found
        run_id, run = found
        return JSONResponse(
            {
                "events": run.total,
                "done": self.broker.is_done(run_id),
                "subscribers": self.broker.n_subscribers(run_id),
            }
        )

    async def drop(self, request: Request) -> Response:
        found = self._run(request)
        if isinstance(found, Response):
            return found
        run_id, _ = found
        dropped = self.broker.n_subscribers(run_id)
        stop = self.stops.pop(run_id, None)
        if stop is not None:
            stop.set()
        return JSONResponse({"dropped": dropped, "done": self.broker.is_done(run_id)})

    async def resume(self, request: Request) -> Response:
        found = self._run(request)
        if isinstance(found, Response):
            return found
        found[1].resume.set()
        return JSONResponse({"resumed": True})

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.broker.bind_loop(asyncio.get_running_loop())
        try:
            yield
        finally:
            # Workers are daemon threads; this makes them close their runs and return promptly.
            self.shutdown.set()
            for run in self.runs.values():
                run.resume.set()
            aclose = getattr(self.broker, "aclose", None)
            if aclose is not None:
                # A RedisRunBroker: stop its reader task and close its connections.
                await aclose()


def create_app(
    broker: AnyBroker | None = None,
    *,
    keepalive_interval: float = 15.0,
    retry_ms: int = 1000,
    retention_seconds: float = 300.0,
    max_runs: int = 1000,
) -> Starlette:
    """The demo app. Without ``broker`` it makes one that keeps closed runs a little longer than
    ``retention_seconds``, after which the app answers 404 for them: subscribing to a run the broker
    has forgotten would wait forever. A broker passed in must retain closed runs at least that long;
    it may be a ``RedisRunBroker`` (``python -m broker.demo --redis URL``), which the app closes
    when it shuts down. The broker is available as ``app.state.broker``."""
    if broker is None:
        broker = RunBroker(
            retain_closed_runs=max_runs, retain_closed_seconds=retention_seconds + 60.0
        )
    demo = _Demo(
        broker,
        keepalive_interval=keepalive_interval,
        retry_ms=retry_ms,
        retention_seconds=retention_seconds,
        max_runs=max_runs,
    )
    app = Starlette(
        routes=[
            Route("/", demo.index, methods=["GET"]),
            Route("/runs", demo.start_run, methods=["POST"]),
            Route("/runs/{run_id}", demo.status, methods=["GET"]),
            Route("/runs/{run_id}/events", demo.events, methods=["GET"]),
            Route("/runs/{run_id}/drop", demo.drop, methods=["POST"]),
            Route("/runs/{run_id}/resume", demo.resume, methods=["POST"]),
        ],
        lifespan=demo.lifespan,
    )
    app.state.broker = broker
    return app
