"""Deterministic, single-threaded checks of the mutant zoo (tests/mutants).

For every correct broker: the plain life cycle and the contract's sequential promises. For every
mutant whose defect shows without concurrency: a direct test of that defect. The mutants whose
defect needs a particular interleaving are left to the stateful suite and its kill matrix.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
from pathlib import Path
from typing import Any

import pytest

from tests.mutants import (
    CORRECT,
    EXPECTED,
    INVARIANTS,
    MUTANTS,
    entry,
    load_class,
    module_name,
    parse_caught_by,
    zoo,
)

Event = dict[str, Any]
DONE: Event = {"type": "done"}
MUTANTS_DIR = Path(__file__).with_name("mutants")


def make(impl: str, **kwargs: Any) -> Any:
    """Build a broker of the zoo and bind it to the running loop."""
    broker = load_class(impl)(**kwargs)
    broker.bind_loop(asyncio.get_running_loop())
    return broker


def has_replay(impl: str) -> bool:
    return "last_event_id" in inspect.signature(load_class(impl).subscribe).parameters


def has_backlog_limit(impl: str) -> bool:
    return "max_backlog" in inspect.signature(load_class(impl)).parameters


async def settle(rounds: int = 10) -> None:
    """Let the loop run every callback already scheduled (and those they schedule)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def drain(queue: asyncio.Queue[Event]) -> list[Event]:
    items: list[Event] = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def without_ids(items: list[Event]) -> list[Event]:
    return [{k: v for k, v in item.items() if k != "id"} for item in items]


def closed_record(broker: Any) -> Any:
    """The broker's bounded record of closed runs (a helper object keeps it in a split design)."""
    return broker._closed if hasattr(broker, "_closed") else broker._locks._closed


async def read_until_terminal(queue: asyncio.Queue[Event]) -> list[Event]:
    items: list[Event] = []
    while True:
        item = await asyncio.wait_for(queue.get(), timeout=2)
        items.append(item)
        if item.get("type") in ("done", "overflow"):
            return items


def takes(impl: str, *parameters: str) -> bool:
    return set(parameters) <= set(inspect.signature(load_class(impl)).parameters)


REPLAY = [impl for impl in CORRECT if has_replay(impl)]
BACKLOG = [impl for impl in CORRECT if has_backlog_limit(impl)]
RETAINED_BY_COUNT = [impl for impl in CORRECT if takes(impl, "max_closed_runs")]
RETAINED_BY_AGE = [impl for impl in CORRECT if takes(impl, "retain_closed_seconds", "clock")]


# -- the registry -------------------------------------------------------------------------------


def test_registry_lists_every_module_once() -> None:
    # Modules named ``_*`` are helpers that a broker of the zoo imports, not brokers.
    on_disk = {p.stem for p in MUTANTS_DIR.glob("*.py") if not p.stem.startswith("_")}
    listed = [module_name(impl) for impl in (*CORRECT, *MUTANTS)]
    assert sorted(listed) == sorted(on_disk)
    assert all(m.startswith("correct_") for m in listed[: len(CORRECT)])
    assert all(m.startswith("mutant_") for m in listed[len(CORRECT) : len(CORRECT) + len(MUTANTS)])
    assert len(CORRECT) >= 3
    assert len(MUTANTS) >= 14


@pytest.mark.parametrize("impl", [*CORRECT, *MUTANTS])
def test_registry_entry_names_a_seed_api_class(impl: str) -> None:
    cls = load_class(impl)
    for name in ("bind_loop", "subscribe", "unsubscribe", "emit", "close", "n_subscribers"):
        assert callable(getattr(cls, name)), name
    assert callable(cls.is_done)
    e = entry(impl)
    assert e.defect
    if e.correct:
        assert e.invariant is None
    else:
        assert e.invariant in INVARIANTS
        assert EXPECTED.get(impl, e.invariant) == e.invariant
        assert e.invariant not in e.also


def test_every_invariant_has_a_mutant() -> None:
    assert {e.invariant for e in zoo() if not e.correct} == set(INVARIANTS)


def test_parse_caught_by() -> None:
    doc = "Defect.\nCaught by: order\nAlso caught by: no-duplicates, replay-seam\n\nMore."
    assert parse_caught_by(doc) == ("order", ("no-duplicates", "replay-seam"))
    with pytest.raises(ValueError, match="exactly one"):
        parse_caught_by("Defect.\nNo line here.")
    with pytest.raises(ValueError, match="unknown"):
        parse_caught_by("Defect.\nCaught by: order, no-duplicates")
    with pytest.raises(ValueError, match="unknown"):
        parse_caught_by("Defect.\nCaught by: ordering")


# -- correct brokers: the sequential life cycle ---------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("impl", CORRECT)
async def test_correct_life_cycle(impl: str) -> None:
    broker = make(impl)
    queue = broker.subscribe("run")
    assert broker.n_subscribers("run") == 1
    assert not broker.is_done("run")
    await asyncio.to_thread(broker.emit, "run", {"type": "step", "n": 1})
    await asyncio.to_thread(broker.emit, "run", {"type": "step", "n": 2})
    await asyncio.to_thread(broker.close, "run")
    items = await read_until_terminal(queue)
    assert without_ids(items) == [{"type": "step", "n": 1}, {"type": "step", "n": 2}, DONE]
    assert items[-1] == DONE
    if has_replay(impl):
        assert [item["id"] for item in items[:-1]] == [1, 2]
    assert broker.is_done("run")
    broker.unsubscribe("run", queue)  # as an SSE handler does after done: a no-op or cleanup
    assert broker.n_subscribers("run") == 0
    assert "run" not in broker._subscribers
    await settle()
    assert drain(queue) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("impl", CORRECT)
async def test_correct_close_is_idempotent_and_emit_after_close_is_dropped(impl: str) -> None:
    broker = make(impl)
    queue = broker.subscribe("run")
    broker.close("run")
    broker.close("run")
    broker.emit("run", {"type": "late"})
    assert await read_until_terminal(queue) == [DONE]  # a broker's own thread may deliver it
    await settle()
    assert drain(queue) == []
    assert broker.n_subscribers("run") == 0
    assert "run" not in broker._subscribers


@pytest.mark.asyncio
@pytest.mark.parametrize("impl", CORRECT)
async def test_correct_subscribe_after_close_gets_done_at_once(impl: str) -> None:
    broker = make(impl)
    broker.close("run")
    queue = broker.subscribe("run")
    assert queue.get_nowait() == DONE
    assert broker.n_subscribers("run") == 0
    assert "run" not in broker._subscribers


@pytest.mark.asyncio
@pytest.mark.parametrize("impl", CORRECT)
async def test_correct_unsubscribe_keeps_the_other_subscribers(impl: str) -> None:
    broker = make(impl)
    first = broker.subscribe("run")
    second = broker.subscribe("run")
    other_run = broker.subscribe("other")
    broker.unsubscribe("run", first)
    assert broker.n_subscribers("run") == 1
    broker.emit("run", {"type": "step"})
    broker.close("run")
    assert without_ids(await read_until_terminal(second)) == [{"type": "step"}, DONE]
    await settle()
    assert drain(first) == []
    assert drain(other_run) == []
    assert broker.n_subscribers("run") == 0
    assert broker.n_subscribers("other") == 1
    broker.unsubscribe("other", other_run)
    assert broker._subscribers == {}


@pytest.mark.asyncio
@pytest.mark.parametrize("impl", CORRECT)
async def test_correct_last_unsubscribe_removes_the_map_entry(impl: str) -> None:
    broker = make(impl)
    queues = [broker.subscribe("run") for _ in range(3)]
    for queue in queues:
        broker.unsubscribe("run", queue)
    broker.unsubscribe("run", queues[0])  # unknown queue: a no-op
    assert broker.n_subscribers("run") == 0
    assert broker._subscribers == {}


def test_every_correct_broker_has_a_retention() -> None:
    assert sorted(RETAINED_BY_COUNT + RETAINED_BY_AGE) == sorted(CORRECT)


@pytest.mark.asyncio
@pytest.mark.parametrize("impl", RETAINED_BY_COUNT)
async def test_correct_closed_runs_are_forgotten_by_count(impl: str) -> None:
    broker = make(impl, max_closed_runs=3)
    for n in range(10):
        broker.emit(n, {"type": "step"})
        broker.close(n)
    assert len(closed_record(broker)) == 3
    assert [broker.is_done(n) for n in range(10)] == [False] * 7 + [True] * 3
    if hasattr(broker, "_runs"):
        assert len(broker._runs) == 3


@pytest.mark.asyncio
@pytest.mark.parametrize("impl", RETAINED_BY_AGE)
async def test_correct_closed_runs_are_forgotten_by_age(impl: str) -> None:
    now = [0.0]
    broker = make(impl, retain_closed_seconds=2.0, clock=lambda: now[0])
    for n in range(6):  # run n closes at time n
        now[0] = float(n)
        broker.close(n)
    assert [broker.is_done(n) for n in range(6)] == [False] * 3 + [True] * 3  # 3, 4, 5: <= 2 s
    assert list(closed_record(broker)) == [3, 4, 5]
    late = broker.subscribe(5)
    assert late.get_nowait() == DONE


# -- correct brokers: replay and backlog limit ----------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("impl", REPLAY)
async def test_correct_replay_then_live_without_gap_or_duplicate(impl: str) -> None:
    broker = make(impl)
    for n in range(1, 4):
        broker.emit("run", {"n": n})
    with pytest.raises(ValueError, match="id"):
        broker.emit("run", {"id": 7})
    queue = broker.subscribe("run", last_event_id=1)
    assert [item["id"] for item in drain(queue)] == [2, 3]  # the replay is there at once
    broker.emit("run", {"n": 4})
    broker.close("run")
    await settle()
    assert drain(queue) == [{"n": 4, "id": 4}, DONE]
    assert broker._subscribers == {}


@pytest.mark.asyncio
@pytest.mark.parametrize("impl", REPLAY)
async def test_correct_replay_gap_marker(impl: str) -> None:
    broker = make(impl, replay_size=2)
    for n in range(1, 6):
        broker.emit("run", {"n": n})
    queue = broker.subscribe("run", last_event_id=1)
    assert drain(queue) == [
        {"type": "gap", "last_event_id": 1, "first_available_id": 4},
        {"n": 4, "id": 4},
        {"n": 5, "id": 5},
    ]
    everything = broker.subscribe("run", last_event_id=0)
    assert drain(everything)[0] == {"type": "gap", "last_event_id": 0, "first_available_id": 4}
    up_to_date = broker.subscribe("run", last_event_id=5)
    assert drain(up_to_date) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("impl", REPLAY)
async def test_correct_replay_of_a_closed_run(impl: str) -> None:
    broker = make(impl)
    broker.emit("run", {"n": 1})
    broker.emit("run", {"n": 2})
    broker.close("run")
    assert drain(broker.subscribe("run", last_event_id=0)) == [
        {"n": 1, "id": 1},
        {"n": 2, "id": 2},
        DONE,
    ]
    assert drain(broker.subscribe("run", last_event_id=2)) == [DONE]
    assert drain(broker.subscribe("run")) == [DONE]
    assert broker._subscribers == {}


@pytest.mark.asyncio
@pytest.mark.parametrize("impl", BACKLOG)
async def test_correct_slow_subscriber_is_cut_off_with_a_marker(impl: str) -> None:
    broker = make(impl, max_backlog=2)
    slow = broker.subscribe("run")
    fast = broker.subscribe("run")
    broker.emit("run", {"n": 1})
    broker.emit("run", {"n": 2})
    await settle()
    drain(fast)
    broker.emit("run", {"n": 3})
    await settle()
    # Brokers without replay do not number events: compare without the ids.
    assert without_ids(drain(slow)) == [{"n": 1}, {"n": 2}, {"type": "overflow", "limit": 2}]
    assert broker.n_subscribers("run") == 1
    broker.emit("run", {"n": 4})
    broker.close("run")
    await settle()
    assert drain(slow) == []
    fast_items = drain(fast)
    assert without_ids(fast_items) == [{"n": 3}, {"n": 4}, DONE]
    if has_replay(impl):
        assert [item["id"] for item in fast_items[:-1]] == [3, 4]
    assert broker._subscribers == {}


# -- mutants whose defect shows without concurrency ----------------------------------------------


def mutant(module: str) -> str:
    [impl] = [impl for impl in MUTANTS if impl.partition(":")[0].endswith("." + module)]
    return impl


@pytest.mark.asyncio
async def test_mutant_original_design_double_done_and_event_after_done() -> None:
    broker = make(mutant("mutant_original_design"))
    queue = broker.subscribe("run")
    broker.close("run")
    broker.emit("run", {"type": "late"})
    broker.close("run")
    await settle()
    assert drain(queue) == [DONE, {"type": "late"}, DONE]
    assert broker.n_subscribers("run") == 1  # still registered after done


@pytest.mark.asyncio
async def test_mutant_emit_after_close_delivers_after_done() -> None:
    broker = make(mutant("mutant_emit_after_close"))
    queue = broker.subscribe("run")
    broker.close("run")
    broker.emit("run", {"type": "late"})
    await settle()
    assert drain(queue) == [DONE, {"type": "late"}]


@pytest.mark.asyncio
async def test_mutant_close_twice_sends_done_twice() -> None:
    broker = make(mutant("mutant_close_twice_double_done"))
    queue = broker.subscribe("run")
    broker.close("run")
    broker.close("run")
    await settle()
    assert drain(queue) == [DONE, DONE]


@pytest.mark.asyncio
async def test_mutant_empty_set_left_behind() -> None:
    broker = make(mutant("mutant_empty_set_left"))
    queue = broker.subscribe("run")
    broker.unsubscribe("run", queue)
    assert broker.n_subscribers("run") == 0  # n_subscribers cannot see it...
    assert broker._subscribers == {"run": {}}  # ...the internal map can


@pytest.mark.asyncio
async def test_mutant_unsubscribe_drops_every_subscriber() -> None:
    broker = make(mutant("mutant_unsubscribe_drops_all"))
    leaving = broker.subscribe("run")
    staying = broker.subscribe("run")
    broker.unsubscribe("run", leaving)
    assert broker.n_subscribers("run") == 0
    broker.emit("run", {"type": "step"})
    broker.close("run")
    await settle()
    assert drain(staying) == []  # neither the event nor done


@pytest.mark.asyncio
async def test_mutant_batch_reversed_delivers_a_batch_backwards() -> None:
    broker = make(mutant("mutant_batch_reversed"))
    queue = broker.subscribe("run")
    broker.emit("run", {"n": 1})  # both land in one batch: the flush has not run yet
    broker.emit("run", {"n": 2})
    broker.close("run")
    await settle()
    assert drain(queue) == [{"n": 2, "id": 2}, {"n": 1, "id": 1}, DONE]


@pytest.mark.asyncio
async def test_mutant_overflow_silent_drop_loses_events_without_a_marker() -> None:
    broker = make(mutant("mutant_overflow_silent_drop"), max_backlog=2)
    queue = broker.subscribe("run")
    for n in range(1, 4):
        broker.emit("run", {"n": n})
    await settle()
    assert drain(queue) == [{"n": 1, "id": 1}, {"n": 2, "id": 2}]
    assert broker.n_subscribers("run") == 1  # still registered, silently behind
    broker.emit("run", {"n": 4})
    await settle()
    assert drain(queue) == [{"n": 4, "id": 4}]  # a hole: id 3 is gone


@pytest.mark.asyncio
async def test_mutant_defaultdict_emit_leaves_an_empty_set() -> None:
    broker = make(mutant("mutant_defaultdict_emit_leak"))
    queue = broker.subscribe("run")
    broker.unsubscribe("run", queue)
    assert broker._subscribers == {}
    broker.emit("run", {"type": "step"})  # nobody listens any more
    assert broker.n_subscribers("run") == 0
    assert broker._subscribers == {"run": set()}


@pytest.mark.asyncio
async def test_mutant_weakset_keeps_unsubscribed_queues_until_collected() -> None:
    broker = make(mutant("mutant_weakset_unsubscribe_by_gc"))
    queue = broker.subscribe("run")
    broker.unsubscribe("run", queue)
    assert broker.n_subscribers("run") == 1  # still referenced here, so still subscribed
    broker.emit("run", {"type": "step"})
    await settle()
    assert drain(queue) == [{"type": "step"}]
    del queue
    gc.collect()
    assert broker.n_subscribers("run") == 0
    assert list(broker._subscribers) == ["run"]  # an empty WeakSet stays behind


@pytest.mark.asyncio
async def test_mutant_coroutine_live_lookup_loses_an_event_emitted_before_close() -> None:
    broker = make(mutant("mutant_coroutine_live_lookup"))
    queue = broker.subscribe("run")
    broker.emit("run", {"n": 1})  # its delivery runs on the loop, after close below
    broker.close("run")
    await settle()
    assert drain(queue) == [DONE]


@pytest.mark.asyncio
async def test_mutant_replay_gap_off_by_one_sends_a_spurious_gap() -> None:
    broker = make(mutant("mutant_replay_gap_off_by_one"))
    broker.emit("run", {"n": 1})
    queue = broker.subscribe("run", last_event_id=0)
    assert drain(queue) == [
        {"type": "gap", "last_event_id": 0, "first_available_id": 1},
        {"n": 1, "id": 1},
    ]


@pytest.mark.asyncio
async def test_mutant_shared_id_counter_numbers_runs_from_one_sequence() -> None:
    broker = make(mutant("mutant_shared_id_counter"))
    broker.emit("other", {"n": 1})
    broker.emit("run", {"n": 1})
    queue = broker.subscribe("run", last_event_id=0)
    assert drain(queue) == [
        {"type": "gap", "last_event_id": 0, "first_available_id": 2},
        {"n": 1, "id": 2},
    ]


@pytest.mark.asyncio
async def test_mutant_overflow_drops_oldest_loses_events_without_a_marker() -> None:
    broker = make(mutant("mutant_overflow_drops_oldest"), max_backlog=2)
    queue = broker.subscribe("run")
    for n in range(1, 4):
        broker.emit("run", {"n": n})
    await settle()
    assert drain(queue) == [{"n": 2, "id": 2}, {"n": 3, "id": 3}]  # id 1 is gone, unannounced
    assert broker.n_subscribers("run") == 1


@pytest.mark.asyncio
async def test_mutant_unsubscribe_by_equality_keeps_a_resumed_subscriber() -> None:
    broker = make(mutant("mutant_unsubscribe_by_equality"))
    plain = broker.subscribe("run")
    broker.unsubscribe("run", plain)
    assert broker.n_subscribers("run") == 0
    resumed = broker.subscribe("run", last_event_id=0)
    broker.unsubscribe("run", resumed)
    assert broker.n_subscribers("run") == 1
    assert "run" in broker._subscribers


@pytest.mark.asyncio
async def test_mutant_done_ids_kept_remembers_every_closed_run() -> None:
    broker = make(mutant("mutant_done_ids_kept"), max_closed_runs=3)
    for n in range(10):
        broker.close(n)
    assert list(broker._closed) == [7, 8, 9]  # the bounded record forgets...
    assert broker._done_ids == set(range(10))  # ...the set beside it never does
    assert broker.is_done(0)


@pytest.mark.asyncio
async def test_mutant_run_locks_never_pruned_keeps_a_lock_per_run() -> None:
    broker = make(mutant("mutant_run_locks_never_pruned"), max_closed_runs=3)
    for n in range(10):
        broker.emit(n, {"type": "step"})
        broker.close(n)
    assert list(broker._closed) == [7, 8, 9]
    assert sorted(broker._locks) == list(range(10))


@pytest.mark.asyncio
async def test_mutant_handles_kept_holds_every_delivery_that_ran() -> None:
    broker = make(mutant("mutant_handles_kept"), max_closed_runs=3)
    for n in range(10):
        queue = broker.subscribe(n)
        broker.emit(n, {"type": "step"})
        broker.close(n)
        await settle()
        assert drain(queue) == [{"type": "step"}, DONE]
        broker.unsubscribe(n, queue)
    assert len(broker._handles) == 20  # an event and a done a run, all delivered long ago
    broker.shutdown()
    assert broker._handles == []


@pytest.mark.asyncio
async def test_correct_pump_wait_idle_returns_once_the_items_are_in_the_queues() -> None:
    broker = make("tests.mutants.correct_pump_task:PumpTaskBroker")
    queue = broker.subscribe("run")

    def produce() -> bool:
        broker.emit("run", {"n": 1})
        broker.close("run")
        return bool(broker.wait_idle(timeout=10))  # the loop pumps while this thread waits

    assert await asyncio.to_thread(produce)
    assert drain(queue) == [{"n": 1}, DONE]


@pytest.mark.asyncio
async def test_mutant_late_binding_closure_hands_every_item_to_the_last_subscriber() -> None:
    broker = make(mutant("mutant_late_binding_closure"))
    first = broker.subscribe("run")
    second = broker.subscribe("run")
    broker.emit("run", {"n": 1})
    broker.close("run")
    await settle()
    assert drain(first) == []
    assert drain(second) == [{"n": 1, "id": 1}, {"n": 1, "id": 1}, DONE, DONE]


@pytest.mark.asyncio
async def test_mutant_replay_greater_equal_repeats_the_seam_event() -> None:
    broker = make(mutant("mutant_replay_greater_equal"))
    broker.emit("run", {"n": 1})
    broker.emit("run", {"n": 2})
    queue = broker.subscribe("run", last_event_id=1)
    assert drain(queue) == [{"n": 1, "id": 1}, {"n": 2, "id": 2}]  # the client had id 1


@pytest.mark.asyncio
async def test_mutant_queuefull_swallowed_drops_events_without_a_marker() -> None:
    broker = make(mutant("mutant_queuefull_swallowed"), max_backlog=2)
    queue = broker.subscribe("run")
    for n in range(1, 4):
        broker.emit("run", {"n": n})
    await settle()
    assert drain(queue) == [{"n": 1}, {"n": 2}]
    assert broker.n_subscribers("run") == 1  # still registered, silently behind
    broker.emit("run", {"n": 4})
    await settle()
    assert drain(queue) == [{"n": 4}]  # a hole where n=3 was


@pytest.mark.asyncio
async def test_mutant_eviction_before_done_leaves_the_subscriber_without_done() -> None:
    broker = make(mutant("mutant_eviction_before_done"))
    queue = broker.subscribe("run")
    broker.emit("run", {"n": 1})
    broker.close("run")
    assert broker.n_subscribers("run") == 0  # forgotten at once...
    await settle()
    assert drain(queue) == [{"n": 1}]  # ...so its done went to nobody
    assert broker.is_done("run")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("impl", "delivered"),
    [
        ("tests.mutants.correct_actor_task:ActorTaskBroker", [{"n": 1}, DONE]),
        (mutant("mutant_call_soon_from_producer"), []),
    ],
)
async def test_mutant_call_soon_from_producer_is_refused_by_a_debug_loop(
    impl: str, delivered: list[Event]
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)  # asyncio then refuses call_soon from a thread other than the loop's
    try:
        broker = make(impl)
        queue = broker.subscribe("run")
        await asyncio.to_thread(broker.emit, "run", {"n": 1})
        await asyncio.to_thread(broker.close, "run")
        await settle()  # what the producer thread scheduled is in the loop's ready queue
        assert drain(queue) == delivered
    finally:
        loop.set_debug(False)
