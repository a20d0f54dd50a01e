"""``python -m bench scheduler [--quick]``: what the stateful suite's deterministic scheduler costs.

Prints one table:

(f) switch points per second of ``stateful.runtime.Runtime``: managed threads run a traced loop
    in this file, so every line is a switch point at which the strategy chooses the next thread:
    under ``RunToCompletion`` the running one, which then goes on without a hand-off; when two
    threads alternate at every switch point, the other one, so the running thread parks and
    the controller resumes the other; against the same loop run untraced;
(g) examples per second of ``stateful.machine.RunBrokerMachine`` against ``broker:RunBroker``
    under Hypothesis, with the suite's step count and ``derandomize=True``, so every run of the
    benchmark draws the same examples; and the switch points those examples took.

The rates are the best of a few repeats (the machine runs once); ``--quick`` is a smaller smoke
run.
"""

from __future__ import annotations

import argparse
import functools
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck
from hypothesis import settings as Settings

from bench.table import aligned
from stateful.machine import RunBrokerMachine, machine_for
from stateful.runner import run_machine
from stateful.runtime import Runtime
from stateful.strategy import RunToCompletion, SchedulingStrategy
from stateful.trace import Step

IMPL = "broker:RunBroker"
# As the suite runs the machine (conftest.py's profiles): 25 steps per example.
STEP_COUNT = 25


@dataclass(frozen=True)
class Config:
    """The sizes of one benchmark run."""

    iterations: int = 50_000
    repeats: int = 3
    examples: int = 100


FULL = Config()
QUICK = Config(iterations=2_000, repeats=1, examples=3)


@dataclass(frozen=True)
class RuntimeRate:
    """One way of running the traced loop: switch points taken and the best time."""

    switch_points: int
    seconds: float


@dataclass(frozen=True)
class MachineRun:
    """What running the state machine took."""

    examples: int
    switch_points: int
    seconds: float


@dataclass(frozen=True)
class Results:
    """What one benchmark run measured."""

    config: Config
    untraced_seconds: float
    one_thread: RuntimeRate
    alternating: RuntimeRate
    machine: MachineRun


def spin(iterations: int) -> int:
    """The traced workload: each iteration executes two lines, so two switch points."""
    total = 0
    for _ in range(iterations):
        total += 1
    return total


class Alternate:
    """Switch to another runnable thread at every switch point (round-robin)."""

    def choose(self, runnable: Sequence[int], current: int | None, at_sync: bool) -> int:
        later = [index for index in runnable if current is None or index > current]
        return later[0] if later else runnable[0]


def _untraced_seconds(config: Config) -> float:
    start = time.perf_counter()
    spin(config.iterations)
    return time.perf_counter() - start


def _runtime_rate(
    config: Config, threads: int, strategy: Callable[[], SchedulingStrategy]
) -> RuntimeRate:
    """Run ``spin`` on ``threads`` managed threads (the iterations split between them)."""
    best: RuntimeRate | None = None
    for _ in range(config.repeats):
        # Every iteration is two lines, plus a few lines of call and return per thread.
        runtime = Runtime([__file__], max_steps=4 * config.iterations + 100)
        try:
            for index in range(threads):
                worker = runtime.worker(f"spinner-{index}")
                worker.submit(functools.partial(_spin_op, config.iterations // threads), "spin")
            start = time.perf_counter()
            runtime.run(strategy())
            seconds = time.perf_counter() - start
            steps = sum(isinstance(entry, Step) for entry in runtime.trace.entries)
        finally:
            runtime.shutdown()
        if best is None or seconds < best.seconds:
            best = RuntimeRate(steps, seconds)
    assert best is not None
    return best


def _spin_op(iterations: int) -> None:
    spin(iterations)


def _machine_run(config: Config) -> MachineRun:
    counted = {"examples": 0, "switch_points": 0}

    class Counted(machine_for(IMPL)):  # type: ignore[misc]
        def teardown(self) -> None:
            try:
                super().teardown()
            finally:
                entries: list[Any] = self.harness_trace_entries()
                counted["examples"] += 1
                counted["switch_points"] += sum(isinstance(entry, Step) for entry in entries)

    machine: type[RunBrokerMachine] = Counted
    settings = Settings(
        max_examples=config.examples,
        stateful_step_count=STEP_COUNT,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    start = time.perf_counter()
    run_machine(machine, settings=settings)
    seconds = time.perf_counter() - start
    return MachineRun(counted["examples"], counted["switch_points"], seconds)


def run(config: Config) -> Results:
    """Measure everything the table shows."""
    untraced = min(_untraced_seconds(config) for _ in range(config.repeats))
    return Results(
        config=config,
        untraced_seconds=untraced,
        one_thread=_runtime_rate(config, 1, RunToCompletion),
        alternating=_runtime_rate(config, 2, Alternate),
        machine=_machine_run(config),
    )


def table_rows(results: Results) -> list[tuple[str, str, str]]:
    """The table as (measure, value, per unit) rows, header first."""
    config = results.config
    untraced_us = results.untraced_seconds / (2 * config.iterations) * 1e6
    rows = [("measure", "value", "per unit")]
    for label, rate in (
        ("(f) switch points/s, 1 thread, RunToCompletion", results.one_thread),
        ("(f) switch points/s, 2 threads alternating", results.alternating),
    ):
        rows.append(
            (
                label,
                f"{rate.switch_points / rate.seconds:,.0f}",
                f"{rate.seconds / rate.switch_points * 1e6:.1f} us/switch point",
            )
        )
    rows.append(("(f) the same lines untraced", "", f"{untraced_us:.3f} us/line"))
    machine = results.machine
    rows += [
        (
            f"(g) examples/s, RunBrokerMachine vs {IMPL}",
            f"{machine.examples / machine.seconds:.1f}",
            f"{machine.seconds / machine.examples * 1e3:.0f} ms/example",
        ),
        (
            "(g) switch points per example",
            f"{machine.switch_points / machine.examples:,.0f}",
            f"{machine.switch_points:,} in {machine.examples} examples",
        ),
        (
            "(g) switch points/s over the whole machine run",
            f"{machine.switch_points / machine.seconds:,.0f}",
            "incl. Hypothesis, invariants, reports",
        ),
    ]
    return rows


def format_table(results: Results) -> str:
    """The printed report: a header line, the table, and what was measured."""
    rows = table_rows(results)
    lines = aligned(rows, left=(0, 2))
    config = results.config
    header = (
        f"scheduler: {config.iterations:,} loop iterations, best of {config.repeats}; "
        f"max_examples={config.examples} ({results.machine.examples} examples run) x "
        f"{STEP_COUNT} steps, derandomized; "
        f"Python {platform.python_version()} on {platform.machine()}"
    )
    footer = (
        "(f): at each switch point the strategy chooses; kept running (RunToCompletion), the "
        "thread goes on; switched (alternating), it parks and the controller resumes the other "
        "(two real lock hand-offs). (g): one Hypothesis run of the machine."
    )
    return "\n".join([header, "", *lines, "", footer])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench scheduler [--quick]``."""
    parser = argparse.ArgumentParser(prog="python -m bench scheduler", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small single-repeat smoke run")
    args = parser.parse_args(argv)
    print(format_table(run(QUICK if args.quick else FULL)))
    return 0
