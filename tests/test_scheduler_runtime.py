"""The deterministic scheduler runs real threads one at a time, on virtual time, with the asyncio
loop as one more scheduled thread.

Each test runs small functions from ``tests.scheduler_targets`` (traced, so each of its lines is
a switch point, and under controlled primitives) on managed threads, under a fixed schedule.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest

from stateful.loop import ControlledLoop
from stateful.primitives import controlled
from stateful.runtime import Runtime, running
from stateful.strategy import PreemptionSchedule, RunToCompletion
from stateful.trace import Mark, Step
from tests import scheduler_targets as targets

# Small, so that a switch point that blocks for real fails the test quickly instead of hanging.
WATCHDOG_SECONDS = 2.0
TARGETS_FILE = targets.__file__


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    rt = Runtime([TARGETS_FILE], watchdog_seconds=WATCHDOG_SECONDS)
    with controlled([targets]), running(rt):
        yield rt


@pytest.fixture
def loop(runtime: Runtime) -> Iterator[ControlledLoop]:
    controlled_loop = ControlledLoop(runtime)
    yield controlled_loop
    if not runtime.aborted:
        controlled_loop.stop_and_wait()
        runtime.run(RunToCompletion())
    controlled_loop.close()


def lines_run(rt: Runtime, function: str) -> list[tuple[str, int]]:
    """(thread, line) for every line of ``function`` a thread was resumed at, in order."""
    return [
        (rt.threads[entry.thread].name, entry.position.lineno)
        for entry in rt.trace.entries
        if isinstance(entry, Step) and entry.position.function == function
    ]


def first_line_of(function: object) -> int:
    code = getattr(function, "__code__")  # noqa: B009 - functions and methods alike
    return int(code.co_firstlineno) + 1


# -- one thread at a time -------------------------------------------------------------------------

# Counted in lines: thread a is resumed from its idle park twice, reads, and is then switched out
# just before it writes back what it read.
PREEMPT_BETWEEN_READ_AND_WRITE = PreemptionSchedule(first=0, preemptions=((2, 0, False),))


def increment_on_two_threads(rt: Runtime, strategy: object) -> targets.Counter:
    counter = targets.Counter()
    rt.worker("a").submit(counter.unlocked_increment, "increment on a")
    rt.worker("b").submit(counter.unlocked_increment, "increment on b")
    rt.run(strategy)  # type: ignore[arg-type]
    return counter


def test_a_preemption_inside_an_unlocked_read_modify_write_loses_an_update(
    runtime: Runtime,
) -> None:
    counter = increment_on_two_threads(runtime, PREEMPT_BETWEEN_READ_AND_WRITE.start())

    assert counter.value == 1
    read = first_line_of(targets.Counter.unlocked_increment)
    write = read + 1
    # b read and wrote while a stood between its read and its write.
    assert lines_run(runtime, "unlocked_increment") == [
        ("a", read),
        ("b", read),
        ("b", write),
        ("a", write),
    ]


def test_run_to_completion_never_interleaves_the_read_modify_write(runtime: Runtime) -> None:
    counter = increment_on_two_threads(runtime, RunToCompletion())

    assert counter.value == 2
    read = first_line_of(targets.Counter.unlocked_increment)
    assert lines_run(runtime, "unlocked_increment") == [
        ("a", read),
        ("a", read + 1),
        ("b", read),
        ("b", read + 1),
    ]


def test_a_lock_keeps_the_update_under_the_same_preemption(runtime: Runtime) -> None:
    counter = targets.Counter()
    lock = targets.lock_made_lazily()
    for name in ("a", "b"):
        runtime.worker(name).submit(
            functools.partial(counter.locked_increment, lock), f"increment on {name}"
        )
    runtime.run(PreemptionSchedule(first=0, preemptions=((3, 0, False),) * 4).start())

    assert counter.value == 2


def test_the_same_schedule_gives_the_same_trace() -> None:
    traces = []
    for _ in range(2):
        rt = Runtime([TARGETS_FILE], watchdog_seconds=WATCHDOG_SECONDS)
        with controlled([targets]), running(rt):
            increment_on_two_threads(rt, PREEMPT_BETWEEN_READ_AND_WRITE.start())
        traces.append(rt.trace.entries)

    assert traces[0] == traces[1]
    assert any(isinstance(entry, Step) for entry in traces[0])


# -- virtual time ---------------------------------------------------------------------------------


def test_sleep_in_a_traced_module_passes_virtual_time_only(runtime: Runtime) -> None:
    log: list[str] = []
    # A real sleep of 4 s would trip the 2 s watchdog.
    runtime.worker("slow").submit(functools.partial(targets.nap, 4.0, log, "slow"), "nap 4")
    runtime.worker("quick").submit(functools.partial(targets.nap, 1.5, log, "quick"), "nap 1.5")
    runtime.run(RunToCompletion())

    assert log == ["quick", "slow"]
    assert runtime.clock.now == 4.0


def test_call_later_timers_fire_in_virtual_time_order(
    runtime: Runtime, loop: ControlledLoop
) -> None:
    fired: list[tuple[str, float]] = []

    def arm() -> None:
        for name, delay in (("third", 3.0), ("first", 1.0), ("second", 2.5)):
            loop.call_later(delay, lambda name=name: fired.append((name, loop.time())))

    loop.call_soon_threadsafe(arm)
    runtime.run(RunToCompletion())

    assert fired == [("first", 1.0), ("second", 2.5), ("third", 3.0)]
    assert runtime.clock.now == 3.0


# -- the loop -------------------------------------------------------------------------------------


def test_call_soon_threadsafe_from_a_producer_is_a_switch_point(
    runtime: Runtime, loop: ControlledLoop
) -> None:
    delivered: list[str] = []
    for name in ("a", "b"):
        runtime.worker(name).submit(
            functools.partial(targets.post, loop, delivered, name), f"post {name}"
        )
    # Counted in lines: a is switched out at its call_soon_threadsafe, before its callback is
    # queued, and b posts first.
    runtime.run(PreemptionSchedule(first=1, preemptions=((2, 1, False),)).start())

    assert delivered == ["b", "a"]
    notes_of_a = [
        entry.position.note
        for entry in runtime.trace.entries
        if isinstance(entry, Step) and runtime.threads[entry.thread].name == "a"
    ]
    assert notes_of_a[-1] == "call_soon_threadsafe"


def test_a_loop_step_runs_the_ready_callbacks_once(runtime: Runtime, loop: ControlledLoop) -> None:
    index = loop.managed.index

    def first() -> None:
        runtime.trace.mark(index, "first")
        loop.call_soon(lambda: runtime.trace.mark(index, "queued by first"))

    loop.call_soon_threadsafe(first)
    loop.call_soon_threadsafe(lambda: runtime.trace.mark(index, "second"))
    runtime.run(RunToCompletion())

    entries = runtime.trace.entries
    marks = [entry.text for entry in entries if isinstance(entry, Mark)]
    assert marks == ["first", "second", "queued by first"]
    at = {entry.text: i for i, entry in enumerate(entries) if isinstance(entry, Mark)}
    # The two callbacks that were ready ran in one step: no switch point between them.
    assert not any(isinstance(e, Step) for e in entries[at["first"] : at["second"]])
    # What they queued waits for the next step.
    between = entries[at["second"] : at["queued by first"]]
    assert [e.position.note for e in between if isinstance(e, Step)] == [
        "loop step: run ready callbacks"
    ]


def test_an_exception_in_a_loop_callback_is_recorded_as_a_crash(
    runtime: Runtime, loop: ControlledLoop
) -> None:
    loop.call_soon_threadsafe(targets.fail, "boom in a callback")
    loop.call_soon_threadsafe(loop.call_soon, lambda: None)
    runtime.run(RunToCompletion())

    assert [crash.thread for crash in runtime.crashes] == ["loop"]
    assert "ValueError: boom in a callback" in runtime.crashes[0].text


def test_an_exception_in_a_producer_operation_is_recorded_as_a_crash(runtime: Runtime) -> None:
    worker = runtime.worker("p")
    worker.submit(functools.partial(targets.fail, "boom in an operation"), "failing op")
    after: list[str] = []
    worker.submit(functools.partial(after.append, "next op ran"), "next op")
    runtime.run(RunToCompletion())

    assert [(c.thread, c.where) for c in runtime.crashes] == [("p", "failing op")]
    assert "ValueError: boom in an operation" in runtime.crashes[0].text
    assert after == ["next op ran"]
