"""What the clock says to the code under test: virtual time inside managed threads.

While ``stateful.primitives.controlled`` is active, ``time.monotonic``, ``time.perf_counter``,
``time.time``, their ``_ns`` forms and ``time.sleep`` are replaced by the functions below, in the
``time`` module itself (so every ``time.monotonic()`` call, from any module, reaches them), in
``queue`` (which binds ``monotonic`` by name for its timed waits) and, by ``controlled``, wherever
a module under test bound them by name. Each asks which thread calls it:

* a managed thread reads a fixed base plus the runtime's virtual seconds (``Runtime.clock``), so
  the same schedule reads the same times on every run, and its ``sleep`` is a switch point that
  lets virtual time pass and never real time;
* any other thread (the test's own, Hypothesis's, pytest's) reads the real clock and sleeps for
  real.

Virtual time moves only when no thread can run (``stateful.runtime``), so a thread that polls
the clock in a loop sees it stand still until it waits.
"""

from __future__ import annotations

import functools
import queue
import time
from collections.abc import Callable

from stateful import runtime

#: What the clocks read at virtual time 0: a monotonic clock some time after boot, and a wall
#: clock in November 2023.
MONOTONIC_BASE = 1_000.0
WALL_BASE = 1_700_000_000.0
_NS = 1_000_000_000

_real_monotonic = time.monotonic
_real_monotonic_ns = time.monotonic_ns
_real_perf_counter = time.perf_counter
_real_perf_counter_ns = time.perf_counter_ns
_real_time = time.time
_real_time_ns = time.time_ns
_real_sleep = time.sleep


def _virtual_seconds() -> float | None:
    entry = runtime.current()
    return None if entry is None else entry[0].clock.now


def _reading(real: Callable[[], float], base: float) -> Callable[[], float]:
    """A clock that reads ``base`` plus the virtual seconds in a managed thread, else ``real``."""

    def read() -> float:
        now = _virtual_seconds()
        return real() if now is None else base + now

    return read


def _reading_ns(real: Callable[[], int], base: float) -> Callable[[], int]:
    """``_reading`` in integer nanoseconds."""

    def read_ns() -> int:
        now = _virtual_seconds()
        return real() if now is None else int(base) * _NS + round(now * _NS)

    return read_ns


monotonic = _reading(_real_monotonic, MONOTONIC_BASE)
monotonic_ns = _reading_ns(_real_monotonic_ns, MONOTONIC_BASE)
perf_counter = _reading(_real_perf_counter, MONOTONIC_BASE)
perf_counter_ns = _reading_ns(_real_perf_counter_ns, MONOTONIC_BASE)
#: ``time.time`` and ``time.time_ns``.
wall_time = _reading(_real_time, WALL_BASE)
wall_time_ns = _reading_ns(_real_time_ns, WALL_BASE)


def sleep(seconds: float) -> None:
    """A controlled ``time.sleep``: a switch point that lets virtual time pass, never real time."""
    entry = runtime.current()
    if entry is None:
        _real_sleep(seconds)
        return
    rt = entry[0]
    wake_at = rt.clock.now + max(seconds, 0.0)
    rt.wait_until(
        lambda: rt.clock.now >= wake_at, f"sleep {seconds:g}s", blocked_on=None, timeout=seconds
    )


#: Each real function of ``time`` and the controlled one that stands in for it.
CONTROLLED: dict[object, Callable[..., object]] = {
    _real_monotonic: monotonic,
    _real_monotonic_ns: monotonic_ns,
    _real_perf_counter: perf_counter,
    _real_perf_counter_ns: perf_counter_ns,
    _real_time: wall_time,
    _real_time_ns: wall_time_ns,
    _real_sleep: sleep,
}


def patch() -> list[Callable[[], None]]:
    """Install the controlled functions in ``time`` and ``queue``; return how to undo it."""
    undo: list[Callable[[], None]] = []
    for module in (time, queue):
        namespace = vars(module)
        for name, value in list(namespace.items()):
            try:
                controlled = CONTROLLED.get(value)
            except TypeError:  # unhashable module globals are never clock functions
                continue
            if controlled is not None:
                namespace[name] = controlled
                undo.append(functools.partial(namespace.__setitem__, name, value))
    return undo
