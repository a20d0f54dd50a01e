"""``python -m bench load [--quick]``: RunBroker under load, with its default settings.

Producer threads emit to one run as fast as they can and then close it; subscriber tasks on the
loop read every item until ``done``. Prints one table: deliveries per second (every event to
every subscriber, from the first emit to the last ``done``), the producers' emits per second,
the peak resident set size of the process and the most events the broker held for delivery at
once, and the two counts that must be 0: events lost (an event some subscriber did not get, or
got out of order) and subscribers cut off (``overflow``). Exits with status 1 if either is not.
``--quick`` is a small smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.table import aligned
from broker import RunBroker

RUN = "run"
# How often the loop samples the broker's held events; the sampler is one more task on the loop.
SAMPLE_SECONDS = 0.05


@dataclass(frozen=True)
class Config:
    """The sizes of one benchmark run."""

    producers: int = 4
    subscribers: int = 200
    events: int = 1_000_000
    """Events in all, split evenly between the producers."""


FULL = Config()
QUICK = Config(subscribers=20, events=20_000)


@dataclass(frozen=True)
class Results:
    """What one benchmark run measured."""

    config: Config
    seconds: float
    emit_seconds: float
    peak_rss_mib: float
    peak_pending: int
    delivered: int
    lost: int
    cut_off: int


@dataclass
class _Tally:
    received: int = 0
    out_of_order: int = 0
    cut_off: bool = False


async def _consume(queue: asyncio.Queue[dict[str, Any]]) -> _Tally:
    tally = _Tally()
    expected_id = 1
    get = queue.get
    while True:
        item = await get()
        event_id = item.get("id")
        if event_id is None:
            tally.cut_off = item.get("type") == "overflow"
            return tally
        if event_id != expected_id:
            tally.out_of_order += 1
        expected_id = event_id + 1
        tally.received += 1


def _produce(broker: RunBroker, producer: int, events: int) -> None:
    emit = broker.emit
    for seq in range(events):
        emit(RUN, {"producer": producer, "seq": seq})


async def _sample_pending(broker: RunBroker, peak: list[int]) -> None:
    """Until cancelled."""
    while True:
        peak[0] = max(peak[0], broker.stats().pending)
        await asyncio.sleep(SAMPLE_SECONDS)


async def _run(config: Config) -> Results:
    broker = RunBroker()
    queues = [broker.subscribe(RUN) for _ in range(config.subscribers)]
    consumers = [asyncio.create_task(_consume(queue)) for queue in queues]
    peak = [0]
    sampler = asyncio.create_task(_sample_pending(broker, peak))
    share, extra = divmod(config.events, config.producers)
    counts = [share + (producer < extra) for producer in range(config.producers)]
    producers = [
        threading.Thread(target=_produce, args=(broker, producer, count))
        for producer, count in enumerate(counts)
    ]
    emit_seconds = [0.0]
    start = time.perf_counter()

    def close_after() -> None:
        for thread in producers:
            thread.join()
        emit_seconds[0] = time.perf_counter() - start
        broker.close(RUN)

    closer = threading.Thread(target=close_after)
    for thread in producers:
        thread.start()
    closer.start()
    tallies = await asyncio.gather(*consumers)
    seconds = time.perf_counter() - start
    closer.join()
    sampler.cancel()
    for queue in queues:
        broker.unsubscribe(RUN, queue)
    lost = sum(config.events - t.received + t.out_of_order for t in tallies)
    return Results(
        config=config,
        seconds=seconds,
        emit_seconds=emit_seconds[0],
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        peak_pending=peak[0],
        delivered=sum(t.received for t in tallies),
        lost=lost,
        cut_off=sum(t.cut_off for t in tallies),
    )


def run(config: Config) -> Results:
    """Measure everything the table shows."""
    return asyncio.run(_run(config))


def format_table(results: Results) -> str:
    """The printed report: a header line, the table, and what was measured."""
    config = results.config
    deliveries = results.delivered
    rows = [
        ("measure", "value", "target"),
        ("deliveries/s", f"{deliveries / results.seconds:,.0f}", ""),
        ("emits/s, all producers", f"{config.events / results.emit_seconds:,.0f}", ""),
        ("wall time, s", f"{results.seconds:.1f}", ""),
        ("peak RSS, MiB", f"{results.peak_rss_mib:,.1f}", ""),
        ("peak events held for delivery", f"{results.peak_pending:,}", ""),
        ("events lost", f"{results.lost:,}", "0"),
        ("subscribers cut off", f"{results.cut_off:,}", "0"),
    ]
    lines = aligned(rows)
    header = (
        f"load: {config.subscribers} subscribers x {config.events:,} events over "
        f"{config.producers} producer threads, RunBroker() defaults; "
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs"
    )
    footer = (
        f"deliveries/s: {deliveries:,} events received over the wall time, first emit to last "
        "done.\n"
        "peak RSS: the whole process (getrusage). Events held: the broker's stats().pending, "
        f"sampled every {SAMPLE_SECONDS:g} s.\n"
        "events lost: per subscriber, events not received plus events out of id order."
    )
    return "\n".join([header, "", *lines, "", footer])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench load [--quick]``; status 1 if an event was lost or a subscriber cut off."""
    parser = argparse.ArgumentParser(prog="python -m bench load", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args(argv)
    results = run(QUICK if args.quick else FULL)
    print(format_table(results))
    return 1 if results.lost or results.cut_off else 0
