"""The record of one example: what was emitted and closed, when, and what each subscriber got.

Timestamps are the runtime's logical ticks (``Runtime.tick``): since one thread runs at a time
they totally order everything the threads did, so "emit began after subscribe returned" is a
plain comparison. The invariants (``stateful.invariants``) are pure functions of this record.

A subscriber's ``received`` is everything its queue gave it, in order; an item the broker's
declared contract calls noise (``stateful.conformance``) is recorded there as ``Noise``, so that
it shows in reports and counts as an item after ``done``, while ``items``, the stream the event
invariants check, leaves it out.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

EventKey = tuple[int, int]
"""An emitted event's identity: (producer index, that producer's sequence number)."""

TERMINAL_TYPES = frozenset({"done", "overflow"})
MARKER_TYPES = TERMINAL_TYPES | {"gap"}


@dataclass(frozen=True)
class Noise:
    """An item the broker's declared contract lets it send besides events and markers."""

    item: Any


def event_key(item: Any) -> EventKey | None:
    """The identity of a delivered event, or None for markers and foreign items."""
    if isinstance(item, dict) and item.get("type") == "event":
        producer, seq = item.get("p"), item.get("n")
        if isinstance(producer, int) and isinstance(seq, int):
            return (producer, seq)
    return None


def item_type(item: Any) -> str | None:
    return item.get("type") if isinstance(item, dict) else None


def is_event_or_marker(item: Any) -> bool:
    """Whether ``item`` is an event the suite emitted or a marker: never noise."""
    return event_key(item) is not None or item_type(item) in MARKER_TYPES


def describe_item(item: Any) -> str:
    if isinstance(item, Noise):
        return f"noise {item.item!r}"
    key = event_key(item)
    if key is not None:
        suffix = f" id={item['id']}" if "id" in item else ""
        return f"P{key[0]}#{key[1]}{suffix}"
    kind = item_type(item)
    if kind in ("done", "overflow"):
        return str(kind)
    if kind == "gap":
        return f"gap(after {item.get('last_event_id')}, from {item.get('first_available_id')})"
    return repr(item)


NOT_STARTED = sys.maxsize
"""The ``began`` of an emit still queued: it begins after everything that has happened."""


@dataclass
class EmitRecord:
    """An emit, from when it was queued; ``began`` and ``returned`` are set as it runs."""

    key: EventKey
    run: str
    began: int = NOT_STARTED
    returned: int | None = None

    def __str__(self) -> str:
        return f"P{self.key[0]}#{self.key[1]}"


@dataclass
class CloseRecord:
    """A close, from when it began to run."""

    run: str
    producer: int
    began: int
    returned: int | None = None


@dataclass(eq=False)
class Subscriber:
    """One consumer task on the loop: it subscribes, reads until a terminal item, unsubscribes."""

    name: str
    run: str
    last_event_id: int | None = None
    began: int | None = None
    subscribed: int | None = None
    cancelled: int | None = None
    stalled: bool = False
    finished: int | None = None
    queue: Any = None
    received: list[tuple[int, Any]] = field(default_factory=list)

    def __repr__(self) -> str:
        return self.name

    @property
    def stream(self) -> list[Any]:
        """Every item received, noise included."""
        return [item for _, item in self.received]

    @property
    def items(self) -> list[Any]:
        """The items received that the invariants check: noise left out."""
        return [item for _, item in self.received if not isinstance(item, Noise)]

    @property
    def terminal(self) -> Any | None:
        for item in self.items:
            if item_type(item) in TERMINAL_TYPES:
                return item
        return None

    @property
    def overflowed(self) -> bool:
        return item_type(self.terminal) == "overflow"

    def event_keys(self) -> list[EventKey]:
        return [key for key in map(event_key, self.items) if key is not None]

    def describe(self) -> str:
        origin = "" if self.last_event_id is None else f", last_event_id={self.last_event_id}"
        state = []
        if self.cancelled is not None:
            state.append(f"cancelled at t{self.cancelled}")
        if self.stalled:
            state.append("stalled")
        status = f" ({', '.join(state)})" if state else ""
        got = ", ".join(describe_item(item) for item in self.stream) or "nothing"
        return (
            f"{self.name} on {self.run}{origin}, subscribed at t{self.subscribed}{status}: "
            f"received [{got}]"
        )


class History:
    """Everything the machine did to the broker, and everything it observed. With
    ``replays_history``, the broker has declared that a new subscriber first gets every event
    of the run so far (``stateful.conformance``)."""

    def __init__(self, *, replays_history: bool = False) -> None:
        self.replays_history = replays_history
        self.emits: dict[EventKey, EmitRecord] = {}
        self.closes: list[CloseRecord] = []
        self.subscribers: list[Subscriber] = []
        self._next_seq: dict[int, int] = defaultdict(int)

    def new_emit(self, producer: int, run: str) -> EmitRecord:
        """Record an emit when it is queued; its ``began`` is set when it starts running."""
        self._next_seq[producer] += 1
        record = EmitRecord((producer, self._next_seq[producer]), run)
        self.emits[record.key] = record
        return record

    def new_subscriber(self, run: str, last_event_id: int | None = None) -> Subscriber:
        sub = Subscriber(f"s{len(self.subscribers) + 1}", run, last_event_id)
        self.subscribers.append(sub)
        return sub

    def touched(self, run: str) -> bool:
        """Whether any operation on ``run`` has been queued or run."""
        return (
            any(e.run == run for e in self.emits.values())
            or any(c.run == run for c in self.closes)
            or any(s.run == run for s in self.subscribers)
        )

    def first_close(self, run: str) -> CloseRecord | None:
        """The close of ``run`` that began first: the one that counts for the contract."""
        return next((c for c in self.closes if c.run == run), None)

    def close_returned(self, run: str) -> int | None:
        returns = [c.returned for c in self.closes if c.run == run and c.returned is not None]
        return min(returns) if returns else None

    def emits_of(self, run: str) -> list[EmitRecord]:
        """The emits of ``run`` that have begun."""
        return [e for e in self.emits.values() if e.run == run and e.began != NOT_STARTED]

    def subscribers_of(self, run: str) -> list[Subscriber]:
        return [s for s in self.subscribers if s.run == run]

    def known_ids(self) -> dict[EventKey, int]:
        """The id each event was delivered with, as far as any subscriber saw it."""
        ids: dict[EventKey, int] = {}
        for sub in self.subscribers:
            for item in sub.items:
                key = event_key(item)
                if key is not None and isinstance(item.get("id"), int):
                    ids.setdefault(key, item["id"])
        return ids
