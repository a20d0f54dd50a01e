"""``python -m bench fanout [--quick] [--backend redis]``: RunBroker against the in-loop floor
and the original; with ``--backend redis``, also RedisRunBroker across processes beside
RunBroker (``bench.fanout_redis``).

Prints one table:

(a) deliveries per second, producer threads -> RunBroker -> subscriber tasks;
(b) the same fan-out done inside the loop with plain ``asyncio.Queue.put_nowait`` (the floor);
(c) the same as (a) through ``bench.original.OriginalBroker``;
(d) producer CPU time per ``emit`` (``time.thread_time``) at 1, 10 and 100 subscribers;
(e) peak traced memory (``tracemalloc``) after many runs are opened, emitted to and closed.

Every subscriber in (a), (b) and (c) is the same task: ``await queue.get()`` until ``done``. In
(a) the queue is the one ``RunBroker.subscribe`` returns (an ``EventQueue``: a batch goes in with
one call and ``get`` is cheaper when an item is ready); in (b) it is a plain ``asyncio.Queue``
with one ``put_nowait`` per event per subscriber, as the floor is defined.
The rates and the costs are the best of a few repeats, interleaved so that a burst of load
elsewhere on the machine hits every column alike; ``--quick`` is a smaller, single-repeat smoke
run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bench.original import OriginalBroker
from bench.table import aligned
from broker import RunBroker

RUN = "run"


class _Broker(Protocol):
    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None: ...
    def subscribe(self, run_id: str) -> asyncio.Queue[dict[str, Any]]: ...
    def unsubscribe(self, run_id: str, queue: asyncio.Queue[dict[str, Any]]) -> None: ...
    def emit(self, run_id: str, event: dict[str, Any]) -> None: ...
    def close(self, run_id: str) -> None: ...


@dataclass(frozen=True)
class Config:
    """The sizes of one benchmark run."""

    producers: int = 2
    subscribers: int = 10
    events: int = 20_000
    repeats: int = 5
    emit_events: int = 5_000
    emit_subscribers: tuple[int, ...] = (1, 10, 100)
    memory_runs: tuple[int, ...] = (10_000, 100_000)


FULL = Config()
QUICK = Config(events=2_000, repeats=1, emit_events=500, memory_runs=(1_000, 5_000))


@dataclass(frozen=True)
class Results:
    """What one benchmark run measured."""

    config: Config
    broker_rate: float
    floor_rate: float
    original_rate: float
    emit_us: dict[int, tuple[float, float]]
    """Subscribers -> (RunBroker, original) producer CPU microseconds per emit."""
    peak_mib: dict[int, tuple[float, float]]
    """Runs closed -> (RunBroker, original) peak traced MiB."""


def _make_runbroker(config: Config) -> RunBroker:
    # The default construction, as an application would write it: its readers are never cut
    # off, however far the burst runs ahead of the loop.
    return RunBroker()


async def _consume(queue: asyncio.Queue[dict[str, Any]]) -> int:
    received = 0
    while True:
        item = await queue.get()
        kind = item.get("type")
        if kind is not None:
            if kind == "done":
                return received
            raise RuntimeError(f"benchmark subscriber got {item!r}")
        received += 1


def _produce(broker: _Broker, producer: int, events: int) -> None:
    emit = broker.emit
    for seq in range(events):
        emit(RUN, {"producer": producer, "seq": seq})


def _close_after(broker: _Broker, producers: list[threading.Thread]) -> None:
    for thread in producers:
        thread.join()
    broker.close(RUN)


def _check(counts: Sequence[int], expected: int) -> None:
    if any(count != expected for count in counts):
        raise RuntimeError(f"subscribers received {sorted(set(counts))}, expected {expected}")


async def _threaded_rate(broker: _Broker, config: Config) -> float:
    broker.bind_loop(asyncio.get_running_loop())
    queues = [broker.subscribe(RUN) for _ in range(config.subscribers)]
    consumers = [asyncio.create_task(_consume(queue)) for queue in queues]
    producers = [
        threading.Thread(target=_produce, args=(broker, producer, config.events))
        for producer in range(config.producers)
    ]
    closer = threading.Thread(target=_close_after, args=(broker, producers))
    start = time.perf_counter()
    for thread in producers:
        thread.start()
    closer.start()
    counts = await asyncio.gather(*consumers)
    elapsed = time.perf_counter() - start
    closer.join()
    for queue in queues:
        broker.unsubscribe(RUN, queue)
    _check(counts, config.producers * config.events)
    return config.subscribers * config.producers * config.events / elapsed


async def _floor_rate(config: Config) -> float:
    queues: list[asyncio.Queue[dict[str, Any]]] = [
        asyncio.Queue() for _ in range(config.subscribers)
    ]
    consumers = [asyncio.create_task(_consume(queue)) for queue in queues]
    start = time.perf_counter()
    event_id = 0
    for producer in range(config.producers):
        for seq in range(config.events):
            event_id += 1
            event = {"producer": producer, "seq": seq, "id": event_id}
            for queue in queues:
                queue.put_nowait(event)
    for queue in queues:
        queue.put_nowait({"type": "done"})
    counts = await asyncio.gather(*consumers)
    elapsed = time.perf_counter() - start
    _check(counts, config.producers * config.events)
    return config.subscribers * config.producers * config.events / elapsed


def _emit_cost_us(broker: _Broker, subscribers: int, events: int) -> float:
    """Producer CPU time per emit, with the loop and its subscribers on another thread."""
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever)
    loop_thread.start()
    try:

        async def start_consumers() -> list[asyncio.Task[int]]:
            broker.bind_loop(loop)
            return [
                asyncio.create_task(_consume(broker.subscribe(RUN))) for _ in range(subscribers)
            ]

        consumers = asyncio.run_coroutine_threadsafe(start_consumers(), loop).result()
        emit = broker.emit
        start = time.thread_time()
        for seq in range(events):
            emit(RUN, {"producer": 0, "seq": seq})
        cost = time.thread_time() - start
        broker.close(RUN)

        async def finish() -> list[int]:
            return list(await asyncio.gather(*consumers))

        _check(asyncio.run_coroutine_threadsafe(finish(), loop).result(), events)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join()
        loop.close()
    return cost / events * 1e6


def _peak_mib(make: Callable[[], _Broker], runs: int) -> float:
    tracemalloc.start()
    try:
        broker = make()
        for index in range(runs):
            run_id = f"run-{index}"
            for step in range(3):
                broker.emit(run_id, {"step": step})
            broker.close(run_id)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak / 2**20


def run(config: Config) -> Results:
    """Measure everything the table shows."""
    # Repeats interleave (a), (b) and (c), so a burst of load elsewhere on the machine hits
    # all three alike instead of one of them.
    rates: list[tuple[float, float, float]] = []
    for _ in range(config.repeats):
        rates.append(
            (
                asyncio.run(_threaded_rate(_make_runbroker(config), config)),
                asyncio.run(_floor_rate(config)),
                asyncio.run(_threaded_rate(OriginalBroker(), config)),
            )
        )
    broker_rate, floor_rate, original_rate = (max(column) for column in zip(*rates, strict=True))
    costs: dict[int, list[tuple[float, float]]] = {n: [] for n in config.emit_subscribers}
    for _ in range(config.repeats):
        for n in config.emit_subscribers:
            costs[n].append(
                (
                    _emit_cost_us(
                        RunBroker(max_backlog=config.emit_events + 1), n, config.emit_events
                    ),
                    _emit_cost_us(OriginalBroker(), n, config.emit_events),
                )
            )
    emit_us = {
        n: (min(ours for ours, _ in measured), min(original for _, original in measured))
        for n, measured in costs.items()
    }
    peak_mib = {
        runs: (_peak_mib(RunBroker, runs), _peak_mib(OriginalBroker, runs))
        for runs in config.memory_runs
    }
    return Results(config, broker_rate, floor_rate, original_rate, emit_us, peak_mib)


def table_rows(results: Results) -> list[tuple[str, str, str, str, str]]:
    """The table as (measure, RunBroker, reference, ratio, target) rows, header first."""
    rows = [
        ("measure", "RunBroker", "reference", "ratio", "target"),
        (
            "(a) vs (b) deliveries/s, in-loop floor",
            f"{results.broker_rate:,.0f}",
            f"{results.floor_rate:,.0f}",
            f"{results.broker_rate / results.floor_rate:.2f}x",
            ">= 1.0x",
        ),
        (
            "(a) vs (c) deliveries/s, original design",
            f"{results.broker_rate:,.0f}",
            f"{results.original_rate:,.0f}",
            f"{results.broker_rate / results.original_rate:.1f}x",
            ">= 12x",
        ),
    ]
    for subscribers, (ours, original) in results.emit_us.items():
        rows.append(
            (
                f"(d) us/emit, {subscribers} subscriber{'s' * (subscribers != 1)} (vs original)",
                f"{ours:.2f}",
                f"{original:.2f}",
                f"{original / ours:.1f}x",
                "",
            )
        )
    fewest, most = min(results.emit_us), max(results.emit_us)
    rows.append(
        (
            f"(d) us/emit at {most} / at {fewest} subscriber(s)",
            f"{results.emit_us[most][0] / results.emit_us[fewest][0]:.2f}x",
            f"{results.emit_us[most][1] / results.emit_us[fewest][1]:.2f}x",
            "",
            "flat (~1x)",
        )
    )
    for runs, (ours_mib, original_mib) in results.peak_mib.items():
        rows.append(
            (
                f"(e) peak MiB, {runs:,} runs closed (vs original)",
                f"{ours_mib:.1f}",
                f"{original_mib:.1f}",
                f"{original_mib / ours_mib:.1f}x",
                "bounded",
            )
        )
    return rows


def format_table(results: Results) -> str:
    """The printed report: a header line, the table, and what was measured."""
    rows = table_rows(results)
    lines = aligned(rows)
    config = results.config
    header = (
        f"fanout: {config.producers} producer threads x {config.events:,} events, "
        f"{config.subscribers} subscribers; best of {config.repeats}; "
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs"
    )
    footer = (
        "(a): RunBroker() with its default settings.\n"
        f"(d): producer thread CPU time (time.thread_time) over {config.emit_events:,} emits, "
        "subscribers draining on a loop thread; time spent waiting for the GIL is not CPU time.\n"
        "(e): tracemalloc peak; 3 events each, no subscribers, default RunBroker retention "
        "(1,000 closed runs)."
    )
    return "\n".join([header, "", *lines, "", footer])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench fanout [--quick]``."""
    parser = argparse.ArgumentParser(prog="python -m bench fanout", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small single-repeat smoke run")
    parser.add_argument(
        "--backend",
        choices=["redis"],
        action="append",
        default=[],
        help="also measure RedisRunBroker across processes (bench.fanout_redis)",
    )
    args = parser.parse_args(argv)
    print(format_table(run(QUICK if args.quick else FULL)))
    if "redis" in args.backend:
        from bench import fanout_redis

        print()
        print(fanout_redis.main(args.quick))
    return 0
