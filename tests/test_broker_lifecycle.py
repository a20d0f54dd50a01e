"""Construction, loop binding, no loop and closed loop, bad input, retention and stats."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import broker as package
from broker import BrokerStats, EventQueue, RunBroker
from tests.broker_support import drain, in_thread, loop_step


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idle_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop that is never run: what is scheduled on it is never delivered."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


# -- construction and the package -------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["replay_size", "max_backlog", "retain_closed_runs", "retain_closed_seconds", "stall_seconds"],
)
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_sizes_are_rejected_by_name(name: str, value: int) -> None:
    with pytest.raises(ValueError, match=name):
        RunBroker(**{name: value})


@pytest.mark.parametrize("name", ["retain_closed_seconds", "stall_seconds"])
def test_a_nan_time_window_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        RunBroker(**{name: float("nan")})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("replay_size", 2.5),
        ("replay_size", "3"),
        ("max_backlog", True),
        ("max_backlog", 1.5),
        ("retain_closed_runs", None),
        ("retain_closed_seconds", "60"),
        ("retain_closed_seconds", True),
        ("stall_seconds", "1"),
        ("stall_seconds", None),
        ("clock", 5.0),
    ],
)
def test_regression_arguments_of_the_wrong_type_are_rejected_by_name(
    name: str, value: object
) -> None:
    # Accepted, replay_size=2.5 made the first emit raise in the producer thread.
    with pytest.raises(TypeError, match=name):
        RunBroker(**{name: value})  # type: ignore[arg-type]


def test_the_package_has_a_default_instance_and_its_helpers() -> None:
    assert isinstance(package.default_broker, RunBroker)
    assert package.done_marker() == {"type": "done"}
    assert package.overflow_marker(7) == {"type": "overflow", "limit": 7}
    assert package.gap_marker(1, 5) == {"type": "gap", "last_event_id": 1, "first_available_id": 5}
    assert package.is_terminal({"type": "overflow", "limit": 1})
    assert not package.is_terminal({"type": "gap", "last_event_id": 0, "first_available_id": 2})


# -- the loop -------------------------------------------------------------------------------


def test_subscribe_with_no_running_loop_and_none_bound_says_so() -> None:
    with pytest.raises(RuntimeError, match="event loop"):
        RunBroker().subscribe("run")


@pytest.mark.asyncio
async def test_subscribe_binds_the_running_loop() -> None:
    broker = RunBroker()
    broker.subscribe("run")
    broker.bind_loop(asyncio.get_running_loop())  # the same loop: a no-op
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="bound"):
            broker.bind_loop(other)
    finally:
        other.close()
    assert broker.n_subscribers("run") == 1


def test_bind_loop_twice_with_different_open_loops_raises(
    idle_loop: asyncio.AbstractEventLoop,
) -> None:
    broker = RunBroker()
    broker.bind_loop(idle_loop)
    broker.bind_loop(idle_loop)
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="bound"):
            broker.bind_loop(other)
    finally:
        other.close()


def test_regression_bind_loop_rejects_what_is_not_an_event_loop() -> None:
    broker = RunBroker()
    with pytest.raises(TypeError, match="event loop, got object"):
        broker.bind_loop(object())  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    try:
        broker.bind_loop(loop)  # nothing was bound by the bad call
    finally:
        loop.close()


def test_regression_subscribe_outside_a_loop_with_the_bound_loop_closed_says_so() -> None:
    loop = asyncio.new_event_loop()
    broker = RunBroker()
    broker.bind_loop(loop)
    loop.close()
    with pytest.raises(RuntimeError, match="the bound one is closed"):
        broker.subscribe("run")
    assert broker.n_subscribers("run") == 0


@pytest.mark.asyncio
async def test_regression_subscribe_with_an_unhashable_run_id_binds_no_loop() -> None:
    broker = RunBroker()
    with pytest.raises(TypeError, match="run_id must be hashable"):
        broker.subscribe(["a", "list"])  # type: ignore[arg-type]
    other = asyncio.new_event_loop()
    try:
        broker.bind_loop(other)  # ValueError if the failed subscribe had bound the running loop
    finally:
        other.close()


@pytest.mark.asyncio
async def test_subscribe_on_another_loop_than_the_bound_one_raises(
    idle_loop: asyncio.AbstractEventLoop,
) -> None:
    broker = RunBroker()
    broker.bind_loop(idle_loop)
    with pytest.raises(ValueError, match="bound"):
        broker.subscribe("run")
    assert broker.n_subscribers("run") == 0


@pytest.mark.asyncio
async def test_with_no_loop_emit_and_close_record_ids_replay_and_closed_state() -> None:
    broker = RunBroker()
    in_thread(broker.emit, "run", {"n": 1})
    in_thread(broker.emit, "run", {"n": 2})
    in_thread(broker.close, "run")
    assert broker.is_done("run")
    items = drain(broker.subscribe("run", last_event_id=0))
    assert items == [{"n": 1, "id": 1}, {"n": 2, "id": 2}, {"type": "done"}]


def test_emit_after_the_loop_closed_is_dropped_counted_and_forgets_its_subscribers() -> None:
    loop = asyncio.new_event_loop()
    broker = RunBroker()
    broker.bind_loop(loop)
    broker.subscribe("run")  # bound loop, none running: allowed
    loop.close()
    in_thread(broker.emit, "run", {"n": 1})  # raises in the thread if anything escapes
    in_thread(broker.close, "run")
    stats = broker.stats()
    assert stats.dropped_loop_closed == 1
    assert stats.emitted == 1
    assert broker.n_subscribers("run") == 0
    assert broker.is_done("run")


def test_a_flush_stranded_on_a_closed_loop_does_not_buffer_for_ever() -> None:
    loop = asyncio.new_event_loop()
    broker = RunBroker(max_backlog=5)
    broker.bind_loop(loop)
    broker.subscribe("run")
    broker.emit("run", {"n": 0})  # schedules a flush that the closed loop never runs
    loop.close()
    for n in range(1, 50):
        in_thread(broker.emit, "run", {"n": n})
    assert broker.n_subscribers("run") == 0
    assert broker._runs["run"].pending == []
    assert broker.stats().dropped_loop_closed == 5


def test_a_done_stranded_on_a_closed_loop_does_not_block_retention() -> None:
    loop = asyncio.new_event_loop()
    broker = RunBroker(retain_closed_runs=2)
    broker.bind_loop(loop)
    broker.subscribe("stranded")
    broker.close("stranded")  # schedules a flush that the closed loop never runs
    loop.close()
    for index in range(10):
        in_thread(broker.close, f"run-{index}")
    assert broker.stats().closed_runs == 2
    assert not broker.is_done("stranded")
    assert broker.n_subscribers("stranded") == 0


def test_after_the_bound_loop_closed_a_new_loop_can_be_bound() -> None:
    old = asyncio.new_event_loop()
    broker = RunBroker()
    broker.bind_loop(old)
    broker.subscribe("run")
    broker.emit("run", {"n": 1})
    old.close()

    async def on_a_new_loop() -> list[dict[str, Any]]:
        queue = broker.subscribe("run", last_event_id=0)  # rebinds to the running loop
        assert broker.n_subscribers("run") == 1
        broker.emit("run", {"n": 2})
        await loop_step()
        return drain(queue)

    assert [item["id"] for item in asyncio.run(on_a_new_loop())] == [1, 2]
    assert broker.stats().dropped_loop_closed == 1


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_bad_input_raises_at_the_call_site_and_leaves_other_runs_intact() -> None:
    broker = RunBroker()
    queue = broker.subscribe("good")
    broker.emit("good", {"n": 1})
    with pytest.raises(TypeError, match="event must be a dict, got list"):
        broker.emit("good", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='"id"'):
        broker.emit("good", {"id": 7})
    unhashable: Any = ["a", "list"]
    for call in (
        lambda: broker.emit(unhashable, {"n": 1}),
        lambda: broker.close(unhashable),
        lambda: broker.subscribe(unhashable),
        lambda: broker.unsubscribe(unhashable, queue),
        lambda: broker.n_subscribers(unhashable),
        lambda: broker.is_done(unhashable),
    ):
        with pytest.raises(TypeError, match=r"run_id must be hashable, got list \['a', 'list'\]"):
            call()
    broker.emit("good", {"n": 2})
    await loop_step()
    assert drain(queue) == [{"n": 1, "id": 1}, {"n": 2, "id": 2}]
    assert broker.n_subscribers("good") == 1
    assert broker.stats().emitted == 2


@pytest.mark.asyncio
async def test_unsubscribe_of_an_unknown_queue_is_a_no_op() -> None:
    broker = RunBroker()
    queue = broker.subscribe("run")
    broker.unsubscribe("run", EventQueue())
    broker.unsubscribe("run", asyncio.Queue())
    broker.unsubscribe("other run", queue)
    assert broker.n_subscribers("run") == 1
    broker.unsubscribe("run", queue)
    broker.unsubscribe("run", queue)
    assert broker.n_subscribers("run") == 0


# -- retention ------------------------------------------------------------------------------


def test_closed_runs_beyond_the_count_are_forgotten_oldest_first() -> None:
    broker = RunBroker(retain_closed_runs=2)
    for run_id in ("a", "b", "c"):
        broker.emit(run_id, {"n": 1})
        broker.close(run_id)
    assert not broker.is_done("a")
    assert broker.is_done("b")
    assert broker.is_done("c")
    assert broker.stats().forgotten_runs == 1
    assert broker.stats().closed_runs == 2


def test_closed_runs_older_than_the_window_are_forgotten() -> None:
    clock = FakeClock()
    broker = RunBroker(retain_closed_seconds=60, clock=clock)
    broker.close("old")
    clock.now += 30
    broker.close("young")
    clock.now += 30
    assert not broker.is_done("old")
    assert broker.is_done("young")
    clock.now += 29.5
    assert broker.is_done("young")
    clock.now += 0.5
    assert not broker.is_done("young")
    assert broker.stats().closed_runs == 0


def test_a_second_close_does_not_restart_the_retention_window() -> None:
    clock = FakeClock()
    broker = RunBroker(retain_closed_seconds=60, clock=clock)
    broker.close("run")
    clock.now += 50
    broker.close("run")
    clock.now += 10
    assert not broker.is_done("run")


@pytest.mark.asyncio
async def test_a_forgotten_run_id_is_a_new_run() -> None:
    clock = FakeClock()
    broker = RunBroker(retain_closed_seconds=10, clock=clock)
    broker.emit("run", {"n": 1})
    broker.close("run")
    broker.emit("run", {"n": 2})
    assert broker.stats().dropped_after_close == 1
    clock.now += 10
    queue = broker.subscribe("run", last_event_id=0)
    assert drain(queue) == []
    assert broker.n_subscribers("run") == 1
    broker.emit("run", {"n": 3})
    await loop_step()
    assert drain(queue) == [{"n": 3, "id": 1}]


@pytest.mark.asyncio
async def test_a_closed_run_is_not_forgotten_before_its_done_is_delivered() -> None:
    broker = RunBroker(retain_closed_runs=1)
    queue = broker.subscribe("first")
    broker.close("first")
    broker.close("second")  # would evict "first", whose done is still pending
    assert broker.is_done("first")
    await loop_step()
    assert drain(queue) == [{"type": "done"}]
    assert not broker.is_done("first")
    assert broker.is_done("second")


def test_regression_a_pending_done_does_not_hold_up_the_eviction_of_later_runs(
    idle_loop: asyncio.AbstractEventLoop,
) -> None:
    # The bound loop is open but does not run (stalled, or stopped and not closed), so the done
    # of "stuck" stays pending: that run stays, but the runs closed after it are still evicted.
    broker = RunBroker(retain_closed_runs=2)
    broker.bind_loop(idle_loop)
    stuck = broker.subscribe("stuck")
    broker.close("stuck")
    for index in range(10):
        broker.close(f"run-{index}")
    assert [broker.is_done(f"run-{index}") for index in range(10)] == [False] * 8 + [True] * 2
    assert broker.is_done("stuck")
    assert broker.stats().closed_runs == 3
    idle_loop.run_until_complete(loop_step())  # the loop runs again: done is delivered
    assert drain(stuck) == [{"type": "done"}]
    assert not broker.is_done("stuck")
    assert broker.stats().closed_runs == 2


def test_regression_a_pending_done_does_not_hold_up_time_based_eviction(
    idle_loop: asyncio.AbstractEventLoop,
) -> None:
    clock = FakeClock()
    broker = RunBroker(retain_closed_seconds=60, clock=clock)
    broker.bind_loop(idle_loop)
    broker.subscribe("stuck")
    broker.close("stuck")
    broker.close("old")
    clock.now += 60
    broker.close("new")
    assert not broker.is_done("old")
    assert broker.is_done("stuck")
    assert broker.is_done("new")
    assert broker.stats().closed_runs == 2


def test_memory_stays_bounded_over_many_runs() -> None:
    broker = RunBroker(retain_closed_runs=10)
    for index in range(1000):
        broker.emit(index, {"n": 1})
        broker.close(index)
    assert len(broker._runs) == 10
    assert broker.stats() == BrokerStats(
        emitted=1000,
        dropped_after_close=0,
        dropped_loop_closed=0,
        overflowed=0,
        forgotten_runs=990,
        open_runs=0,
        closed_runs=10,
        subscribers=0,
        stalls=0,
        pending=0,
    )


def test_the_replay_buffer_of_an_open_run_is_bounded() -> None:
    broker = RunBroker(replay_size=4)
    for n in range(100):
        broker.emit("run", {"n": n})
    assert len(broker._runs["run"].replay) == 4
