"""``python -m bench tracing [--quick]``: the cost of a switch point before every traced line,
``sys.settrace`` against ``sys.monitoring`` (PEP 669, Python 3.12+), on this interpreter.

The runtime makes every line of a traced module a switch point through ``sys.settrace``, which
it installs in managed threads only: a global tracer asked at every call, which returns a line
tracer for frames of traced files. ``sys.monitoring`` could do the same with ``LINE`` events
enabled on the traced code objects alone, so untraced code costs nothing, but its events reach
every thread, so the callback must first tell whether its thread is managed. This measures both
on the same workload (a loop in this file that also calls untraced code, as a broker calls
asyncio and the standard library), with a callback that does what a switch point does first
(find the calling thread's entry, count the event), and prints lines per second, the slowdown
against the untraced loop, and the events each one delivered (equal counts: the same switch
points). The rates are the best of a few repeats.

The last column is what each way delivers in a loop written on one line
(``while turns < n: turns += 1``), as a spin-wait often is: ``sys.settrace`` reports the line
again at every jump back to it, ``LINE`` events only when the line changes, so under
``sys.monitoring`` alone such a loop would have no switch point to be preempted at.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any

from bench.table import aligned

#: A tool id sys.monitoring leaves free (0 to 5) that no debugger, profiler or coverage uses.
TOOL_ID = 4


@dataclass(frozen=True)
class Config:
    iterations: int
    repeats: int


FULL = Config(iterations=200_000, repeats=5)
QUICK = Config(iterations=2_000, repeats=1)


def workload(iterations: int) -> int:
    """Traced lines interleaved with calls into untraced code."""
    total = 0
    payload = {"type": "event", "n": 0}
    for n in range(iterations):
        payload["n"] = n
        total += len(json.dumps(payload))
        total -= n % 7
    return total


class Counter:
    """The switch point's first work: which managed thread is this, and one more event."""

    def __init__(self) -> None:
        self.events = 0
        self.managed = {threading.get_ident(): self}

    def hit(self) -> None:
        if self.managed.get(threading.get_ident()) is self:
            self.events += 1


def one_line_loop(n: int) -> int:
    """A loop on one line, as a spin-wait often is."""
    turns = 0
    while turns < n: turns += 1  # fmt: skip  # noqa: E701 (the point is one line)
    return turns


ONE_LINE_TURNS = 1_000


def _traced_codes() -> set[CodeType]:
    return {workload.__code__, one_line_loop.__code__}


def run_untraced(work: Callable[[int], int], iterations: int) -> int:
    work(iterations)
    return 0


def run_settrace(work: Callable[[int], int], iterations: int) -> int:
    counter = Counter()
    traced = _traced_codes()

    def line_tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            counter.hit()
        return line_tracer

    def global_tracer(frame: FrameType, event: str, arg: Any) -> Any:
        return line_tracer if frame.f_code in traced else None

    sys.settrace(global_tracer)
    try:
        work(iterations)
    finally:
        sys.settrace(None)
    return counter.events


def run_monitoring(work: Callable[[int], int], iterations: int) -> int:
    monitoring: Any = getattr(sys, "monitoring")  # noqa: B009 (absent before 3.12)
    counter = Counter()

    def on_line(code: CodeType, line: int) -> Any:
        counter.hit()

    monitoring.use_tool_id(TOOL_ID, "bench-tracing")
    try:
        monitoring.register_callback(TOOL_ID, monitoring.events.LINE, on_line)
        for code in _traced_codes():
            monitoring.set_local_events(TOOL_ID, code, monitoring.events.LINE)
        work(iterations)
        for code in _traced_codes():
            monitoring.set_local_events(TOOL_ID, code, 0)
    finally:
        monitoring.register_callback(TOOL_ID, monitoring.events.LINE, None)
        monitoring.free_tool_id(TOOL_ID)
    return counter.events


Way = Callable[[Callable[[int], int], int], int]


@dataclass(frozen=True)
class Rate:
    name: str
    events: int
    seconds: float
    one_line_events: int


def best_of(name: str, run: Way, config: Config) -> Rate:
    best = float("inf")
    events = 0
    for _ in range(config.repeats):
        started = time.perf_counter()
        events = run(workload, config.iterations)
        best = min(best, time.perf_counter() - started)
    return Rate(name, events, best, run(one_line_loop, ONE_LINE_TURNS))


def table(rates: Sequence[Rate], iterations: int) -> list[str]:
    floor = rates[0].seconds
    rows = [
        [
            "way",
            "loop iterations/s",
            "slowdown",
            "line events",
            f"one-line loop of {ONE_LINE_TURNS:,}: events",
        ]
    ]
    for rate in rates:
        rows.append(
            [
                rate.name,
                f"{iterations / rate.seconds:,.0f}",
                f"{rate.seconds / floor:.2f}x",
                f"{rate.events:,}",
                f"{rate.one_line_events:,}",
            ]
        )
    return aligned(rows)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench tracing", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller smoke run")
    config = QUICK if parser.parse_args(argv).quick else FULL
    ways: list[tuple[str, Way]] = [
        ("untraced", run_untraced),
        ("sys.settrace", run_settrace),
    ]
    if hasattr(sys, "monitoring"):
        ways.append(("sys.monitoring", run_monitoring))
    print(
        f"Python {platform.python_version()}, {config.iterations:,} iterations, best of "
        f"{config.repeats}"
    )
    for line in table([best_of(name, run, config) for name, run in ways], config.iterations):
        print(line)
    return 0
