"""Event ids and replay: ``subscribe(run_id, last_event_id=N)``, the gap marker, and the seam."""

from __future__ import annotations

from typing import Any

import pytest

from broker import RunBroker
from tests.broker_support import drain, in_thread, loop_step


def emit_in_thread(broker: RunBroker, run_id: str, first: int, last: int) -> None:
    def emit_range() -> None:
        for n in range(first, last + 1):
            broker.emit(run_id, {"n": n})

    in_thread(emit_range)


def ids(items: list[dict[str, Any]]) -> list[int]:
    return [item["id"] for item in items]


@pytest.mark.asyncio
async def test_replay_delivers_the_buffered_events_after_n_then_live_ones() -> None:
    broker = RunBroker()
    for n in range(1, 6):
        broker.emit("run", {"n": n})
    queue = broker.subscribe("run", last_event_id=3)
    assert drain(queue) == [{"n": 4, "id": 4}, {"n": 5, "id": 5}]
    emit_in_thread(broker, "run", 6, 7)
    await loop_step()
    assert ids(drain(queue)) == [6, 7]


@pytest.mark.asyncio
async def test_last_event_id_0_asks_for_everything_buffered() -> None:
    broker = RunBroker()
    for n in range(1, 4):
        broker.emit("run", {"n": n})
    assert ids(drain(broker.subscribe("run", last_event_id=0))) == [1, 2, 3]


@pytest.mark.asyncio
async def test_a_gap_marker_comes_first_when_events_after_n_were_evicted() -> None:
    broker = RunBroker(replay_size=3)
    for n in range(1, 8):
        broker.emit("run", {"n": n})
    items = drain(broker.subscribe("run", last_event_id=2))
    assert items[0] == {"type": "gap", "last_event_id": 2, "first_available_id": 5}
    assert ids(items[1:]) == [5, 6, 7]


@pytest.mark.asyncio
async def test_no_gap_marker_when_the_buffer_starts_right_after_n() -> None:
    broker = RunBroker(replay_size=3)
    for n in range(1, 8):
        broker.emit("run", {"n": n})
    assert ids(drain(broker.subscribe("run", last_event_id=4))) == [5, 6, 7]


@pytest.mark.asyncio
async def test_n_at_the_newest_id_gets_live_events_only() -> None:
    broker = RunBroker()
    broker.emit("run", {"n": 1})
    up_to_date = broker.subscribe("run", last_event_id=1)
    assert drain(up_to_date) == []
    broker.emit("run", {"n": 2})
    await loop_step()
    assert ids(drain(up_to_date)) == [2]


@pytest.mark.asyncio
async def test_n_past_the_newest_id_gets_a_gap_marker_then_live_events() -> None:
    broker = RunBroker()
    broker.emit("run", {"n": 1})
    ahead = broker.subscribe("run", last_event_id=9)
    assert drain(ahead) == [{"type": "gap", "last_event_id": 9, "first_available_id": 2}]
    broker.emit("run", {"n": 2})
    await loop_step()
    assert ids(drain(ahead)) == [2]


@pytest.mark.asyncio
async def test_regression_resuming_a_forgotten_run_gets_a_gap_marker_not_silence() -> None:
    # The run closed and was forgotten while the page was away; the reconnect must learn that
    # it has to resync, instead of waiting for a done that will never come.
    broker = RunBroker(retain_closed_runs=1)
    for n in range(1, 4):
        broker.emit("run", {"n": n})
    broker.close("run")
    broker.close("another run")  # "run" is forgotten
    items = drain(broker.subscribe("run", last_event_id=3))
    assert items == [{"type": "gap", "last_event_id": 3, "first_available_id": 1}]


@pytest.mark.asyncio
async def test_replay_of_a_recently_closed_run_is_the_events_after_n_then_done() -> None:
    broker = RunBroker()
    for n in range(1, 4):
        broker.emit("run", {"n": n})
    broker.close("run")
    items = drain(broker.subscribe("run", last_event_id=1))
    assert items == [{"n": 2, "id": 2}, {"n": 3, "id": 3}, {"type": "done"}]
    assert broker.n_subscribers("run") == 0


@pytest.mark.asyncio
async def test_replay_of_an_unknown_run_from_0_is_empty_and_then_live() -> None:
    broker = RunBroker()
    queue = broker.subscribe("new", last_event_id=0)
    assert drain(queue) == []
    broker.emit("new", {"n": 1})
    await loop_step()
    assert ids(drain(queue)) == [1]


@pytest.mark.asyncio
async def test_replay_of_an_unknown_run_from_n_is_a_gap_marker_then_live() -> None:
    broker = RunBroker()
    queue = broker.subscribe("new", last_event_id=5)
    assert drain(queue) == [{"type": "gap", "last_event_id": 5, "first_available_id": 1}]
    broker.emit("new", {"n": 1})
    await loop_step()
    assert ids(drain(queue)) == [1]


@pytest.mark.asyncio
async def test_replay_and_a_pending_batch_meet_with_no_duplicate_and_no_hole() -> None:
    broker = RunBroker()
    live = broker.subscribe("run")
    emit_in_thread(broker, "run", 1, 4)  # ids 1-4 pending, not yet flushed
    reconnect = broker.subscribe("run", last_event_id=2)
    assert ids(drain(reconnect)) == [3, 4]  # from the replay buffer, at once
    emit_in_thread(broker, "run", 5, 6)
    await loop_step()
    assert ids(drain(reconnect)) == [5, 6]
    assert ids(drain(live)) == [1, 2, 3, 4, 5, 6]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("value", "error"), [("3", TypeError), (True, TypeError), (1.0, TypeError), (-1, ValueError)]
)
async def test_a_bad_last_event_id_is_rejected_before_anything_changes(
    value: Any, error: type[Exception]
) -> None:
    broker = RunBroker()
    with pytest.raises(error, match="last_event_id"):
        broker.subscribe("run", last_event_id=value)
    assert broker.n_subscribers("run") == 0


@pytest.mark.parametrize(
    ("value", "error"), [("3", TypeError), (True, TypeError), (1.0, TypeError), (-1, ValueError)]
)
def test_regression_subscription_rejects_a_bad_last_event_id_where_it_is_called(
    value: Any, error: type[Exception]
) -> None:
    # Not later, at `async with`, far from the code that passed it.
    with pytest.raises(error, match="last_event_id"):
        RunBroker().subscription("run", last_event_id=value)
