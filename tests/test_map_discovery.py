"""Subscriber-map discovery (``stateful.introspect``) in the shapes real brokers keep subscribers.

For each broker of ``tests/discovery_targets.py``: discovery finds its map while a subscriber is
live, the cleanup check passes it, and fails its variant that leaves an emptied entry behind,
naming the map. A broker whose map cannot be found is said to be so, and is checked by
``n_subscribers`` alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from stateful import objectgraph
from stateful.errors import ScheduleFailure
from stateful.introspect import SubscriberMaps, no_map_note
from stateful.regression import (
    Emit,
    PreemptionSchedule,
    Replay,
    RunInterleaved,
    Subscribe,
    Unsubscribe,
    replay_steps,
)
from tests import discovery_targets as targets

TARGETS = "tests.discovery_targets"
#: Each shape's broker, and where its map is, as the report names it.
SHAPES = {
    "TupleListBroker": "broker._subscribers",
    "DictOfDictsBroker": "broker._state['subscribers']",
    "BoundMethodBroker": "broker._callbacks",
    "PartialBroker": "broker._senders",
    "HolderBroker": "broker._subscribers",
    "PropertyBroker": "broker.subscribers",
}


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def learned(broker: Any, loop: asyncio.AbstractEventLoop) -> tuple[SubscriberMaps, Any]:
    broker.bind_loop(loop)
    queue = broker.subscribe("r1")
    maps = SubscriberMaps([targets.__name__])
    maps.learn(broker, {"r1": [queue], "r2": []})
    return maps, queue


@pytest.mark.parametrize("name", SHAPES)
def test_discovery_finds_the_map_and_its_leftover(
    name: str, loop: asyncio.AbstractEventLoop
) -> None:
    broker = getattr(targets, f"{name}LeavesEntry")()
    maps, queue = learned(broker, loop)
    assert [objectgraph.render("broker", path) for path in maps.paths] == [SHAPES[name]]
    assert not maps.found_none

    broker.unsubscribe("r1", queue)
    assert broker.n_subscribers("r1") == 0
    [leftover] = maps.leftovers(broker, "r1")
    assert leftover.startswith(f"{SHAPES[name]}['r1'] = ")


@pytest.mark.parametrize("name", SHAPES)
def test_a_broker_that_removes_the_entry_leaves_nothing(
    name: str, loop: asyncio.AbstractEventLoop
) -> None:
    broker = getattr(targets, name)()
    maps, queue = learned(broker, loop)
    broker.unsubscribe("r1", queue)
    assert maps.paths
    assert maps.leftovers(broker, "r1") == []


def subscribe_then_leave(state: Replay) -> None:
    """s1 subscribes and gets an event, then leaves; teardown settles and checks again."""
    state.step(op=Subscribe(slot=0))
    state.step(op=Emit(producer=0, slot=0, count=1))
    state.step(op=RunInterleaved(schedule=PreemptionSchedule(first=0, preemptions=())))
    state.step(op=Unsubscribe(subscriber="s1"))


@pytest.mark.parametrize("name", SHAPES)
def test_the_cleanup_check_fails_an_entry_left_behind_and_passes_the_fix(name: str) -> None:
    with pytest.raises(ScheduleFailure, match=r"^\[subscriber-map-cleanup\]") as failure:
        replay_steps(subscribe_then_leave, f"{TARGETS}:{name}LeavesEntry")
    assert f"still keeps an entry for it in {SHAPES[name]}['r1']" in str(failure.value)
    replay_steps(subscribe_then_leave, f"{TARGETS}:{name}")


def test_a_per_run_state_that_contains_the_subscribers_is_not_a_map(
    loop: asyncio.AbstractEventLoop,
) -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    holder = targets.TupleListBroker()
    holder._subscribers = {"r1": {"queues": {queue}, "events": []}}  # type: ignore[dict-item]
    maps = SubscriberMaps([targets.__name__])
    maps.learn(holder, {"r1": [queue]})
    assert maps.paths == set()
    assert maps.found_none


def test_a_map_discovery_cannot_find_is_said_and_cleanup_rests_on_n_subscribers() -> None:
    spec = f"{TARGETS}:UnmappedStaleCountBroker"
    with pytest.raises(ScheduleFailure, match=r"^\[subscriber-map-cleanup\]") as failure:
        replay_steps(subscribe_then_leave, spec)
    assert "but n_subscribers is 1 (no subscriber map was found" in str(failure.value)
    report = "\n".join(getattr(failure.value, "__notes__", []))
    assert report.count(no_map_note(spec)) == 1
    replay_steps(subscribe_then_leave, f"{TARGETS}:UnmappedBroker")


def test_no_note_where_the_map_was_found() -> None:
    with pytest.raises(ScheduleFailure) as failure:
        replay_steps(subscribe_then_leave, f"{TARGETS}:HolderBrokerLeavesEntry")
    report = "\n".join(getattr(failure.value, "__notes__", []))
    assert "Implementation under test" in report
    assert "no subscriber map found" not in report
