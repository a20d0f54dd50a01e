"""The operations the state machine performs on a broker, as values, and the strategy that
draws the next one.

Every step of an example is one operation, printed in a failing example as, e.g.,
``state.step(op=Emit(producer=0, slot=0, count=2))``. Subscribers are named ``s1``, ``s2``, ...
in the order their ``Subscribe``, ``SubscribeFrom`` or ``Reconnect`` steps appear, and later
operations name the subscriber they act on.

``operations()`` draws only what the machine's current ``Options`` allow, as Hypothesis draws
only rules whose preconditions hold; ``why_not`` tells a replayed operation that the machine
could not have drawn where it stands. The operation kinds are drawn uniformly, as Hypothesis
draws rules.

They are one Hypothesis rule's argument rather than rules of their own because Hypothesis's
swarm testing leaves each rule out of a share of the examples, drawn per example. The races
the suite hunts need subscribers, emits and an interleaved round together, which swarm testing
granted in about a quarter of the examples; with them always available the hardest races in
the mutant zoo were found in a third to a fifth of the examples (``python -m bench search``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from stateful.strategy import PctSchedule, PreemptionSchedule, preemption_schedules

RUN_SLOTS = 2
PRODUCERS = 2
MAX_EMIT_COUNT = 3

# Most operations go to the first slot's run, so that they collide; the second run is there to
# catch crosstalk between runs.
_slots = st.sampled_from((0, 0, 0, 1))
_producers = st.integers(0, PRODUCERS - 1)


@dataclass(frozen=True)
class Subscribe:
    """A consumer task on the loop subscribes to the slot's run and reads until a terminal
    item, then unsubscribes, as an SSE handler does."""

    slot: int


@dataclass(frozen=True)
class SubscribeFrom:
    """A first connection that asks for replay after an id: ``back`` ids before the newest
    one emitted when the threads last settled (the seam with live events is where replay
    breaks). Only for brokers with replay."""

    slot: int
    back: int


@dataclass(frozen=True)
class Reconnect:
    """A page refresh: the subscriber's stream goes, a new one resumes after the last id it
    saw. Only for brokers with replay."""

    subscriber: str


@dataclass(frozen=True)
class Unsubscribe:
    """The client goes away: its consumer task is cancelled and unsubscribes."""

    subscriber: str


@dataclass(frozen=True)
class Emit:
    """The producer thread emits ``count`` events to the slot's run."""

    producer: int
    slot: int
    count: int


@dataclass(frozen=True)
class Close:
    """The producer thread closes the slot's run."""

    producer: int
    slot: int


@dataclass(frozen=True)
class Stall:
    """The client stops reading (a frozen tab), so its backlog grows. Only for brokers with a
    backlog limit."""

    subscriber: str


@dataclass(frozen=True)
class Resume:
    """The client reads again. Only for brokers with a backlog limit."""

    subscriber: str


@dataclass(frozen=True)
class RunInterleaved:
    """Everything queued runs, interleaved as the schedule says, until the threads settle."""

    schedule: PreemptionSchedule | PctSchedule


Operation = (
    Subscribe
    | SubscribeFrom
    | Reconnect
    | Unsubscribe
    | Emit
    | Close
    | Stall
    | Resume
    | RunInterleaved
)


@dataclass(frozen=True)
class Options:
    """What the machine's state allows next."""

    replay: bool
    backlog_limit: bool
    #: Subscribers not unsubscribed or reconnected, by name, oldest first.
    live: tuple[str, ...]
    #: Per slot, the emits to its run that had run when the threads last settled. Bounded by
    #: these rather than by what subscribers happened to see, a draw does not depend on how the
    #: threads ran, so free-running mode can replay its examples.
    settled_emits: tuple[int, ...]
    #: Operations queued since the threads last settled; a round needs two at least.
    pending: int
    #: The optional kinds this example leaves out, by name (see ``left_out_kinds``).
    left_out: tuple[str, ...] = ()

    def kinds(self) -> tuple[type[Operation], ...]:
        """The kinds of operation possible here, in the order they shrink towards."""
        kinds: list[type[Operation]] = [Subscribe, Emit, Close]
        if self.pending >= 2:
            kinds.append(RunInterleaved)
        if self.live:
            kinds.append(Unsubscribe)
        if self.replay:
            kinds.append(SubscribeFrom)
            if self.live:
                kinds.append(Reconnect)
        if self.backlog_limit and self.live:
            kinds += [Stall, Resume]
        return tuple(kind for kind in kinds if kind.__name__ not in self.left_out)


_BY_SUBSCRIBER = (Reconnect, Unsubscribe, Stall, Resume)

#: The kinds an example may leave out: those that end or replace subscribers or end runs.
OPTIONAL = (Close, Unsubscribe, SubscribeFrom, Reconnect)


@st.composite
def left_out_kinds(draw: st.DrawFn) -> tuple[str, ...]:
    """Swarm testing over the optional kinds, as Hypothesis does it over rules: a share drawn
    per example, then each optional kind left out with that probability. Shrinks towards
    leaving nothing out."""
    share = draw(st.integers(0, 254))
    return tuple(kind.__name__ for kind in OPTIONAL if draw(st.integers(0, 254)) < share)


#: Built once: Hypothesis validates a strategy object the first time it draws from it, a walk
#: over the nested strategies that, made anew for every draw, took a tenth to a fifth of the
#: machine's time.
_SCHEDULES = preemption_schedules()


@st.composite
def operations(draw: st.DrawFn) -> Operation:
    """The next operation of the state machine being run, from what its ``options()`` allow."""
    options: Options = draw(st.runner()).options()
    kind = draw(st.sampled_from(options.kinds()))
    if kind in _BY_SUBSCRIBER:
        return kind(draw(st.sampled_from(options.live)))
    if kind is Subscribe:
        return Subscribe(draw(_slots))
    if kind is SubscribeFrom:
        slot = draw(_slots)
        return SubscribeFrom(slot, draw(st.integers(0, options.settled_emits[slot])))
    if kind is Emit:
        return Emit(draw(_producers), draw(_slots), draw(st.integers(1, MAX_EMIT_COUNT)))
    if kind is Close:
        return Close(draw(_producers), draw(_slots))
    return RunInterleaved(draw(_SCHEDULES))


def why_not(op: Any, options: Options) -> str | None:
    """Why ``operations()`` could not have drawn ``op`` under ``options``, or None if it
    could."""
    if type(op) not in options.kinds():
        return f"{type(op).__name__} is not possible here"
    fields = vars(op)
    if "subscriber" in fields and op.subscriber not in options.live:
        return f"no live subscriber named {op.subscriber!r} (live: {list(options.live)})"
    if "producer" in fields and op.producer not in range(PRODUCERS):
        return f"no producer {op.producer}"
    if "slot" in fields and op.slot not in range(RUN_SLOTS):
        return f"no slot {op.slot}"
    if isinstance(op, Emit) and op.count not in range(1, MAX_EMIT_COUNT + 1):
        return f"count {op.count} is not in 1..{MAX_EMIT_COUNT}"
    if isinstance(op, SubscribeFrom) and op.back not in range(options.settled_emits[op.slot] + 1):
        return f"back={op.back}, but {options.settled_emits[op.slot]} emits had run"
    return None
