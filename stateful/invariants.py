"""The broker's invariants, as checks over a ``History``.

Each check raises ``InvariantViolation`` whose ``invariant`` is one of these names, and whose
message names the run, the subscriber and the events involved:

``no-exception``
    no exception escaped an operation, a consumer or a loop callback.
``order``
    each subscriber sees each producer's events in emit order, ids strictly increasing, and all
    subscribers of a run see their common events in the same order; a run's ids are its own
    1, 2, 3, ... (none above the number of emits to the run that have begun).
``no-duplicates``
    no subscriber receives an event twice, and no two events of a run share an id.
``done-exactly-once-last``
    done is delivered at most once, only after close began, and is the last item.
``nothing-after-done``
    nothing follows a terminal item (noise included), no event emitted after close returned is
    delivered, and a subscriber that arrives after close (without replay) gets done and nothing
    else, or, from a broker that declares history, the run's events and then done.
``no-lost-events``
    an event whose emit began after a subscriber's subscribe returned, and returned before close
    began, reaches that subscriber unless it unsubscribed (checked once the threads settle); from
    a broker that declares history, every event of the run that returned before close began
    does, whenever the subscriber arrived; and at any time, the ids a subscriber received run on
    without a hole (a hole that an event received later fills is an ``order`` violation: nothing
    was lost).
``no-hang-after-done``
    once close has returned and the threads settle, every live subscriber has its done.
``subscriber-map-cleanup``
    a run whose subscribers have all left has ``n_subscribers == 0`` and no entry in any map the
    broker was seen keeping its subscribers in.
``is-done``
    ``is_done`` is True once close returned and False before any close began.
``replay-seam``
    a subscriber with ``last_event_id=N`` gets exactly the events after N (after a gap marker
    first if N is no longer buffered), then live ones: no duplicate, no hole at the seam, and a
    gap marker only where events are really gone.
``overflow-marker``
    a subscriber that is cut off gets the overflow marker last, and every event before the cut
    arrived: no silent drop.
``bounded-state``
    once many runs have been opened, closed and left by their subscribers, the broker keeps no
    more of them than its retention allows (no run id in any container reachable from it or its
    modules' globals, beyond that many), and the memory it keeps allocated does not grow with
    the number of runs (checked by ``stateful.boundedstate``, not by the state machine).

Liveness checks (``no-lost-events``, ``no-hang-after-done``, cleanup, replay holes) only hold once
the threads have settled, so they live in ``check_settled``; ``check_safety`` holds at any time.

Items the broker's declared contract calls noise (``stateful.conformance``) are left out of every
check but the first of ``nothing-after-done`` (and of ``overflow-marker``): nothing, noise
included, may follow a terminal item.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

from stateful.errors import InvariantViolation
from stateful.history import (
    NOT_STARTED,
    EmitRecord,
    EventKey,
    History,
    Subscriber,
    describe_item,
    event_key,
    item_type,
)
from stateful.runtime import Crash


def violation(invariant: str, message: str) -> InvariantViolation:
    return InvariantViolation(message, invariant=invariant)


def check_crashes(crashes: Iterable[Crash]) -> None:
    for crash in crashes:
        raise violation(
            "no-exception",
            f"an exception escaped {crash.where} on thread {crash.thread}:\n{crash.text}",
        )


def check_safety(history: History) -> None:
    """Checks that hold at every moment, whatever is still in flight."""
    ids = history.known_ids()
    for sub in history.subscribers:
        _check_terminal_last(history, sub)
        _check_events(history, sub)
        _check_replay_prefix(history, sub, ids)
    _check_ids_unique(history, ids)
    for run in {s.run for s in history.subscribers}:
        _check_common_order(history.subscribers_of(run))


def check_settled(
    history: History,
    n_subscribers: Callable[[str], int],
    is_done: Callable[[str], bool],
    leftover_entries: Callable[[str], list[str]] | None,
    runs: Iterable[str],
) -> None:
    """Checks that hold once every operation has returned and the loop has gone idle.
    ``leftover_entries`` is None when no subscriber map of the broker is known: cleanup then
    rests on ``n_subscribers`` alone."""
    ids = history.known_ids()
    for sub in history.subscribers:
        if sub.cancelled is not None or sub.stalled:
            continue
        _check_no_hang(history, sub)
        _check_no_loss(history, sub, ids)
        if sub.last_event_id is not None and _resumes_within_run(history, sub, ids):
            _check_replay_complete(history, sub, ids)
    for run in runs:
        _check_is_done(history, run, is_done(run))
        if all(s.finished is not None for s in history.subscribers_of(run)):
            leftovers = leftover_entries(run) if leftover_entries is not None else None
            _check_cleanup(history, run, n_subscribers(run), leftovers)


def _received(sub: Subscriber) -> str:
    return sub.describe()


def _check_terminal_last(history: History, sub: Subscriber) -> None:
    # Noise too: what may come at any point before done may not come after it.
    stream = sub.stream
    kinds = [item_type(item) for item in stream]
    if kinds.count("done") > 1:
        raise violation("done-exactly-once-last", f"{sub.name} got done twice. {_received(sub)}")
    for index, kind in enumerate(kinds):
        if kind in ("done", "overflow") and index < len(stream) - 1:
            after = describe_item(stream[index + 1])
            name = "nothing-after-done" if kind == "done" else "overflow-marker"
            raise violation(name, f"{sub.name} got {after} after {kind}. {_received(sub)}")
    for tick, item in sub.received:
        if item_type(item) == "done":
            close = history.first_close(sub.run)
            if close is None or close.began > tick:
                raise violation(
                    "done-exactly-once-last",
                    f"{sub.name} got done at t{tick} but no close of {sub.run} had begun. "
                    f"{_received(sub)}",
                )


def _check_events(history: History, sub: Subscriber) -> None:
    seen: set[EventKey] = set()
    last_seq: dict[int, int] = {}
    last_id: int | None = None
    closed_at = history.close_returned(sub.run)
    for position, item in enumerate(sub.items):
        key = event_key(item)
        if key is None:
            if item_type(item) not in ("done", "overflow", "gap"):
                raise violation(
                    "order", f"{sub.name} got an item that is not an event or marker: {item!r}"
                )
            continue
        emit = history.emits.get(key)
        if emit is None or emit.run != sub.run:
            where = "never emitted" if emit is None else f"emitted to {emit.run}"
            raise violation(
                "order",
                f"{sub.name} on {sub.run} got {describe_item(item)}, {where}. {_received(sub)}",
            )
        if key in seen:
            raise violation(
                "no-duplicates", f"{sub.name} got {describe_item(item)} twice. {_received(sub)}"
            )
        seen.add(key)
        producer, seq = key
        if seq < last_seq.get(producer, 0):
            raise violation(
                "order",
                f"{sub.name} got P{producer}#{seq} after P{producer}#{last_seq[producer]}, "
                f"against producer {producer}'s emit order. {_received(sub)}",
            )
        last_seq[producer] = seq
        event_id = item.get("id")
        if isinstance(event_id, int):
            if last_id is not None and event_id <= last_id:
                raise violation(
                    "order", f"{sub.name} got id {event_id} after id {last_id}. {_received(sub)}"
                )
            if last_id is not None and event_id != last_id + 1:
                missing = range(last_id + 1, event_id)
                later = sub.items[position + 1 :]
                late = [o["id"] for o in later if isinstance(o, dict) and o.get("id") in missing]
                if late:
                    raise violation(
                        "order",
                        f"{sub.name} got id {event_id} right after id {last_id}, and id "
                        f"{late[0]} after it. {_received(sub)}",
                    )
                # Every later event of the run goes to a registered subscriber, so the ids of
                # its stream (replay, then live) run on without a hole: a hole is a lost event.
                raise violation(
                    "no-lost-events" if sub.last_event_id is None else "replay-seam",
                    f"{sub.name} got id {event_id} right after id {last_id}: the events with ids "
                    f"{last_id + 1} to {event_id - 1} of {sub.run} never reached it. "
                    f"{_received(sub)}",
                )
            last_id = event_id
        if closed_at is not None and emit.began > closed_at:
            raise violation(
                "nothing-after-done",
                f"{sub.name} got {emit}, whose emit began at t{emit.began}, after close of "
                f"{sub.run} returned at t{closed_at}: emit after close must be dropped. "
                f"{_received(sub)}",
            )
    close_done = history.close_returned(sub.run)
    if (
        sub.last_event_id is None
        and not history.replays_history
        and close_done is not None
        and sub.began is not None
        and sub.began > close_done
        and seen
    ):
        raise violation(
            "nothing-after-done",
            f"{sub.name} subscribed at t{sub.began}, after close of {sub.run} returned at "
            f"t{close_done}, so it should get done at once and nothing else. {_received(sub)}",
        )


def _check_replay_prefix(history: History, sub: Subscriber, ids: dict[EventKey, int]) -> None:
    for index, item in enumerate(sub.items):
        if item_type(item) != "gap":
            continue
        if sub.last_event_id is None or index != 0:
            raise violation(
                "replay-seam",
                f"{sub.name} got a gap marker at position {index}; a gap marker may only come "
                f"first, to a subscriber that asked for replay. {_received(sub)}",
            )
    if sub.last_event_id is None:
        return
    _check_gap_justified(history, sub, ids)
    # After a gap marker the stream restarts where the marker says; without one, after N.
    items = sub.items
    restart = (
        items[0].get("first_available_id")
        if item_type(items[0] if items else None) == "gap"
        else None
    )
    if isinstance(restart, int):
        floor = restart - 1
    elif _resumes_within_run(history, sub, ids):
        floor = sub.last_event_id
    else:
        return
    for item in items:
        event_id = item.get("id") if isinstance(item, dict) else None
        if event_key(item) is not None and isinstance(event_id, int) and event_id <= floor:
            raise violation(
                "replay-seam",
                f"{sub.name} asked for the events after id {sub.last_event_id} and got "
                f"{describe_item(item)}. {_received(sub)}",
            )


def _resumes_within_run(history: History, sub: Subscriber, ids: dict[EventKey, int]) -> bool:
    """Whether the run surely had ``last_event_id`` when ``sub`` arrived. The contract says
    what replay after an id the run has not reached yet means only for a forgotten run, so the
    seam is judged only for ids some subscriber saw delivered by an emit that had returned."""
    assert sub.last_event_id is not None
    arrived = sub.began if sub.began is not None else 0
    newest = max(
        (
            event_id
            for key, event_id in ids.items()
            if history.emits[key].run == sub.run
            and (returned := history.emits[key].returned) is not None
            and returned < arrived
        ),
        default=0,
    )
    return sub.last_event_id <= newest


def _check_gap_justified(history: History, sub: Subscriber, ids: dict[EventKey, int]) -> None:
    """A leading gap marker says the events after ``last_event_id`` up to its
    ``first_available_id`` are gone: so at least one is, and the replay starts right there.
    (Resuming after an id the run had not reached is left unjudged: see _resumes_within_run.)"""
    items = sub.items
    if not items or item_type(items[0]) != "gap":
        return
    assert sub.last_event_id is not None
    first_available = items[0].get("first_available_id")
    if not isinstance(first_available, int):
        return
    if first_available <= sub.last_event_id + 1 and _resumes_within_run(history, sub, ids):
        raise violation(
            "replay-seam",
            f"{sub.name} resumed after id {sub.last_event_id} and got a gap marker saying the "
            f"events from id {first_available} on are still buffered: no event is missing, so "
            f"there is no gap. {_received(sub)}",
        )
    following = next((item for item in items[1:] if event_key(item) is not None), None)
    if following is not None and following.get("id") != first_available:
        raise violation(
            "replay-seam",
            f"{sub.name} got a gap marker up to id {first_available} and then "
            f"{describe_item(following)}. {_received(sub)}",
        )


def _check_ids_unique(history: History, ids: dict[EventKey, int]) -> None:
    owner: dict[tuple[str, int], EventKey] = {}
    begun: dict[str, int] = {}
    for emit in history.emits.values():
        if emit.began != NOT_STARTED:
            begun[emit.run] = begun.get(emit.run, 0) + 1
    for sub in history.subscribers:
        for item in sub.items:
            key = event_key(item)
            if key is None or not isinstance(item.get("id"), int):
                continue
            if not 1 <= item["id"] <= begun.get(sub.run, 0):
                raise violation(
                    "order",
                    f"{sub.name} got {describe_item(item)}, but only {begun.get(sub.run, 0)} "
                    f"emits to {sub.run} have begun: a run's ids are 1, 2, 3, ... of its own.",
                )
            if ids[key] != item["id"]:
                raise violation(
                    "no-duplicates",
                    f"P{key[0]}#{key[1]} was delivered with id {ids[key]} to one subscriber and "
                    f"id {item['id']} to {sub.name}",
                )
            slot = (sub.run, item["id"])
            if owner.setdefault(slot, key) != key:
                other = owner[slot]
                raise violation(
                    "no-duplicates",
                    f"id {item['id']} of {sub.run} was given to both P{other[0]}#{other[1]} and "
                    f"P{key[0]}#{key[1]}",
                )


def _check_common_order(subscribers: list[Subscriber]) -> None:
    orders = [(sub, sub.event_keys()) for sub in subscribers]
    for index, (first, first_keys) in enumerate(orders):
        rank = {key: position for position, key in enumerate(first_keys)}
        for second, second_keys in orders[index + 1 :]:
            common = [key for key in second_keys if key in rank]
            for before, after in itertools.pairwise(common):
                if rank[before] > rank[after]:
                    raise violation(
                        "order",
                        f"{first.name} and {second.name} of the same run saw "
                        f"P{before[0]}#{before[1]} and P{after[0]}#{after[1]} in opposite "
                        f"orders.\n  {first.describe()}\n  {second.describe()}",
                    )


def _check_no_hang(history: History, sub: Subscriber) -> None:
    closed_at = history.close_returned(sub.run)
    if closed_at is None or sub.terminal is not None:
        return
    raise violation(
        "no-hang-after-done",
        f"close of {sub.run} returned at t{closed_at} and the threads settled, but "
        f"{sub.name} never got done. {_received(sub)}",
    )


def _gets_history(history: History, sub: Subscriber) -> bool:
    """Whether ``sub`` is promised the run's events from its first, not from its subscribe."""
    return history.replays_history and sub.last_event_id is None


def _required(history: History, sub: Subscriber) -> list[EmitRecord]:
    """The events the no-loss contract promises ``sub``."""
    if sub.subscribed is None:
        return []
    close = history.first_close(sub.run)
    from_start = _gets_history(history, sub)
    return [
        e
        for e in history.emits_of(sub.run)
        if (from_start or e.began > sub.subscribed)
        and e.returned is not None
        and (close is None or e.returned < close.began)
    ]


def _happens_before(first: EmitRecord, second: EmitRecord, ids: dict[EventKey, int]) -> bool:
    """Whether ``first`` must precede ``second`` in every subscriber's stream."""
    if first.key[0] == second.key[0]:
        return first.key[1] < second.key[1]
    if first.key in ids and second.key in ids:
        return ids[first.key] < ids[second.key]
    return first.returned is not None and first.returned < second.began


def _check_no_loss(history: History, sub: Subscriber, ids: dict[EventKey, int]) -> None:
    got = set(sub.event_keys())
    received = [history.emits[key] for key in sub.event_keys()]
    for emit in _required(history, sub):
        if emit.key in got:
            continue
        if sub.overflowed:
            later = next((r for r in received if _happens_before(emit, r, ids)), None)
            if later is None:
                continue  # lost after the cut-off, which the contract allows
            raise violation(
                "overflow-marker",
                f"{sub.name} was cut off but silently lost {emit} (emitted t{emit.began}-"
                f"t{emit.returned}) before {later}, which it did receive. {_received(sub)}",
            )
        before = (
            ", in the run's history, which a new subscriber gets first"
            if sub.began is not None and emit.returned is not None and emit.returned < sub.began
            else ""
        )
        raise violation(
            "no-lost-events",
            f"{sub.name} on {sub.run} subscribed at t{sub.subscribed} and never got {emit}, "
            f"emitted t{emit.began}-t{emit.returned} before close{before}. {_received(sub)}",
        )


def _check_replay_complete(history: History, sub: Subscriber, ids: dict[EventKey, int]) -> None:
    """No hole at the seam: every event after the resume point reached ``sub``."""
    assert sub.last_event_id is not None
    items = sub.items
    resume_after = sub.last_event_id
    if items and item_type(items[0]) == "gap":
        first_id = next(
            (item["id"] for item in items if event_key(item) and isinstance(item.get("id"), int)),
            None,
        )
        if first_id is None:
            return
        resume_after = first_id - 1
    by_id = {event_id: key for key, event_id in ids.items() if history.emits[key].run == sub.run}
    anchor = history.emits.get(by_id[resume_after]) if resume_after in by_id else None
    close = history.first_close(sub.run)
    got = set(sub.event_keys())
    for emit in history.emits_of(sub.run):
        if emit.key in got or emit.returned is None:
            continue
        if close is not None and emit.returned >= close.began:
            continue
        after = (
            resume_after == 0
            or (emit.key in ids and ids[emit.key] > resume_after)
            or (anchor is not None and anchor.returned is not None and emit.began > anchor.returned)
        )
        if after and not sub.overflowed:
            known = f" (id {ids[emit.key]})" if emit.key in ids else ""
            raise violation(
                "replay-seam",
                f"{sub.name} resumed after id {resume_after} but never got {emit}{known}, "
                f"emitted t{emit.began}-t{emit.returned}: a hole at the seam. {_received(sub)}",
            )


def _check_is_done(history: History, run: str, done: bool) -> None:
    closed_at = history.close_returned(run)
    if closed_at is not None and not done:
        raise violation("is-done", f"close of {run} returned at t{closed_at} but is_done is False")
    if history.first_close(run) is None and done:
        raise violation("is-done", f"is_done({run!r}) is True but {run} was never closed")


def _check_cleanup(history: History, run: str, count: int, leftovers: list[str] | None) -> None:
    left = ", ".join(s.name for s in history.subscribers_of(run)) or "none ever subscribed"
    if count != 0:
        unmapped = " (no subscriber map was found: n_subscribers is all it checks)"
        raise violation(
            "subscriber-map-cleanup",
            f"every subscriber of {run} has left ({left}) but n_subscribers is {count}"
            + (unmapped if leftovers is None else ""),
        )
    if leftovers:
        raise violation(
            "subscriber-map-cleanup",
            f"every subscriber of {run} has left ({left}) but the broker still keeps an entry "
            f"for it in {', '.join(leftovers)}",
        )


def check_retained_runs(
    churned: int, holders: dict[str, set[str]], allowed: int, retention: str
) -> None:
    """``holders``: each container path that still holds some of the ``churned`` closed runs'
    ids, with those ids; together they may hold at most ``allowed`` runs."""
    retained = set().union(*holders.values())
    if len(retained) <= allowed:
        return
    worst = sorted(holders.items(), key=lambda holder: (-len(holder[1]), holder[0]))[:3]
    where = "; ".join(f"{path} holds {len(ids)}" for path, ids in worst)
    raise violation(
        "bounded-state",
        f"after {churned} runs were opened, closed and left by their subscribers, the broker "
        f"still keeps {len(retained)} of them, and its retention ({retention}) allows "
        f"{allowed}: {where}",
    )


def check_memory_growth(runs: int, growth: int, limit_per_run: int, allocated_at: str) -> None:
    """Serving ``runs`` more runs left ``growth`` bytes more allocated: at most
    ``limit_per_run`` bytes a run, or the broker keeps something of every run it served."""
    if growth <= limit_per_run * runs:
        return
    raise violation(
        "bounded-state",
        f"serving {runs} more runs (opened, closed and left by their subscribers) left "
        f"{growth} bytes more allocated, {growth // runs} a run (at most {limit_per_run} "
        f"allowed): the broker keeps something of every run it served. Most of it was "
        f"allocated at:\n{allocated_at}",
    )


def describe_all(history: History) -> str:
    """What each subscriber received, one line each."""
    return "\n".join(f"  {sub.describe()}" for sub in history.subscribers) or "  (none)"
