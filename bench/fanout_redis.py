"""``python -m bench fanout --backend redis``: RedisRunBroker across processes beside RunBroker.

For 1, 10 and 100 subscribers of one run, two measurements per backend:

deliveries/s
    a producer emits a burst of events as fast as it can, then closes the run; the rate is
    subscribers x events over the time from the first emit to the last subscriber's ``done``.
p50 / p99 emit-to-receive latency
    a producer emits events at a steady pace (``PACE_HZ``, well below either backend's
    capacity, so the figure is the path's latency rather than a queue's); each event carries
    ``time.monotonic_ns()`` taken just before ``emit``, and each subscriber subtracts it from its
    own ``time.monotonic_ns()`` when it reads the event.

``RunBroker``: producer thread and subscriber tasks in this process. ``RedisRunBroker``: the
producer in this process, the subscribers (one reader task, one process) in a child process,
through a ``redis-server`` this benchmark starts on a free loopback port in a temporary
directory (AOF off: it measures the broker, not the disk). On Linux ``CLOCK_MONOTONIC`` is one
clock for every process of the machine, so the latencies across processes are comparable.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.table import aligned
from broker import RunBroker
from broker.events import is_terminal

SUBSCRIBERS = (1, 10, 100)
# bench/ runs from the repository root; so does the subscriber process.
ROOT = Path(__file__).resolve().parent.parent
PACE_HZ = 1000


@dataclass(frozen=True)
class RedisConfig:
    """The sizes of one run of this benchmark."""

    burst_events: int = 5_000
    paced_events: int = 1_000
    subscribers: tuple[int, ...] = SUBSCRIBERS


FULL = RedisConfig()
QUICK = RedisConfig(burst_events=500, paced_events=200)


@dataclass(frozen=True)
class Row:
    backend: str
    subscribers: int
    rate: float
    p50_ms: float
    p99_ms: float


# -- the subscriber side, the same in both backends ----------------------------------------------


async def _consume(queue: asyncio.Queue[dict[str, Any]], latencies: list[int]) -> int:
    """Read until done; return the monotonic time of ``done``."""
    while True:
        item = await queue.get()
        now = time.monotonic_ns()
        if is_terminal(item):
            if item.get("type") != "done":
                raise RuntimeError(f"benchmark subscriber got {item!r}")
            return now
        latencies.append(now - item["t"])


async def _subscribe_all(broker: Any, run: str, n: int, ready: Callable[[], None]) -> Any:
    latencies: list[int] = []
    queues = [broker.subscribe(run) for _ in range(n)]
    ready()
    ends = await asyncio.gather(*(_consume(queue, latencies) for queue in queues))
    for queue in queues:
        broker.unsubscribe(run, queue)
    return {"latencies": latencies, "end": max(ends)}


def _produce(broker: Any, run: str, events: int, pace_hz: float | None) -> int:
    """Emit, burst or paced; return the monotonic time of the first emit."""
    start = time.monotonic_ns()
    interval = None if pace_hz is None else 1e9 / pace_hz
    for seq in range(events):
        if interval is not None:
            # Pacing the load, not synchronising anything.
            delay = (start + seq * interval - time.monotonic_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
        broker.emit(run, {"seq": seq, "t": time.monotonic_ns()})
    broker.close(run)
    return start


def _row(backend: str, n: int, burst: tuple[int, Any], paced: Any, events: int) -> Row:
    start, result = burst
    elapsed = (result["end"] - start) / 1e9
    latencies = sorted(paced["latencies"])
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return Row(backend, n, n * events / elapsed, quantiles[49] / 1e6, quantiles[98] / 1e6)


# -- RunBroker, one process ----------------------------------------------------------------------


def _in_process(n: int, events: int, pace_hz: float | None) -> tuple[int, Any]:
    broker = RunBroker(max_backlog=events + 1)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        subscribed = threading.Event()
        broker.bind_loop(loop)
        future = asyncio.run_coroutine_threadsafe(
            _subscribe_all(broker, "run", n, subscribed.set), loop
        )
        subscribed.wait()
        start = _produce(broker, "run", events, pace_hz)
        return start, future.result()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


# -- RedisRunBroker, producer here and subscribers in a child process ----------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def redis_server() -> Iterator[str]:
    """A ``redis-server`` on a free loopback port, for the ``with`` block; yields its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    import redis

    with tempfile.TemporaryDirectory(prefix="runbroker-bench-") as directory:
        port = _free_port()
        process = subprocess.Popen(
            [
                *(binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", directory),
                *("--save", "", "--appendonly", "no", "--logfile", f"{directory}/redis.log"),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=port)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("redis-server did not start") from None
                    time.sleep(0.005)  # polling against the deadline
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            client.close()
            process.terminate()
            process.wait(timeout=10)


def _across_processes(url: str, n: int, events: int, pace_hz: float | None) -> tuple[int, Any]:
    from broker.redis import RedisRunBroker

    namespace, run = f"bench-{uuid.uuid4().hex}", "run"
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.fanout_redis", url, namespace, run, str(n), str(events)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout is not None
    try:
        if child.stdout.readline() != "subscribed\n":
            raise RuntimeError("the subscriber process did not subscribe")

        async def close_later(broker: RedisRunBroker) -> None:
            await broker.aclose()

        producer = RedisRunBroker(url, namespace=namespace)
        start = _produce(producer, run, events, pace_hz)
        asyncio.run(close_later(producer))
        out, _ = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if child.returncode != 0:
        raise RuntimeError(f"the subscriber process failed with {child.returncode}")
    return start, json.loads(out)


def _child(url: str, namespace: str, run: str, n: int, events: int) -> None:
    from broker.redis import RedisRunBroker

    async def main() -> Any:
        broker = RedisRunBroker(url, namespace=namespace, max_backlog=events + 1)
        try:
            return await _subscribe_all(broker, run, n, lambda: print("subscribed", flush=True))
        finally:
            await broker.aclose()

    print(json.dumps(asyncio.run(main())))


# -- the table -----------------------------------------------------------------------------------


def run(config: RedisConfig) -> list[Row]:
    """Measure both backends at every subscriber count."""
    rows = []
    for n in config.subscribers:
        rows.append(
            _row(
                "RunBroker, in process",
                n,
                _in_process(n, config.burst_events, None),
                _in_process(n, config.paced_events, PACE_HZ)[1],
                config.burst_events,
            )
        )
    with redis_server() as url:
        for n in config.subscribers:
            rows.append(
                _row(
                    "RedisRunBroker, across processes",
                    n,
                    _across_processes(url, n, config.burst_events, None),
                    _across_processes(url, n, config.paced_events, PACE_HZ)[1],
                    config.burst_events,
                )
            )
    return rows


def format_table(config: RedisConfig, rows: Sequence[Row]) -> str:
    """The printed report: a header line, the table, and what was measured."""
    cells = [("backend", "subscribers", "deliveries/s", "p50 ms", "p99 ms")]
    cells += [
        (
            row.backend,
            str(row.subscribers),
            f"{row.rate:,.0f}",
            f"{row.p50_ms:.3f}",
            f"{row.p99_ms:.3f}",
        )
        for row in rows
    ]
    lines = aligned(cells)
    header = (
        f"fanout --backend redis: 1 producer, subscribers of one run; burst of "
        f"{config.burst_events:,} events for deliveries/s, {config.paced_events:,} events at "
        f"{PACE_HZ:,}/s for latency"
    )
    footer = (
        "RunBroker: producer thread and subscribers in one process. RedisRunBroker: producer\n"
        "in this process, subscribers (one reader task) in another, redis-server on loopback.\n"
        "Latency: time.monotonic_ns() before emit to the subscriber's read, over every delivery."
    )
    return "\n".join([header, "", *lines, "", footer])


def main(quick: bool) -> str:
    """The Redis table, for ``bench.fanout``."""
    config = QUICK if quick else FULL
    return format_table(config, run(config))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
