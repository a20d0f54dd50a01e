"""runbroker: deliver the events of agent runs from worker threads to asyncio subscribers.

Worker threads call ``emit(run_id, event)`` and ``close(run_id)``; handlers on the asyncio loop
call ``subscribe(run_id)`` (or use ``async with broker.subscription(run_id) as sub``) and read
event dicts until ``{"type": "done"}``. Standard library only.

The contract
------------
Ordering
    Every event of a run gets an ``"id"``: 1, 2, 3, ... in the order the emits took the broker's
    lock. Every subscriber gets a run's events in id order, so each producer thread's events in
    emit order, and all subscribers of a run see their common events in the same order.
No loss
    An event whose ``emit`` returned after a subscriber's ``subscribe`` returned, and before
    ``close`` began, reaches that subscriber unless it unsubscribed or was cut off for overflow.
Replay
    Each run keeps its last ``replay_size`` events. ``subscribe(run_id, last_event_id=N)`` first
    delivers the buffered events with ids above N (``N=0``: all of them), preceded by
    ``{"type": "gap", "last_event_id": N, "first_available_id": M}`` if events after N were
    already evicted, then live events: no gap and no duplicate at the seam. An N beyond the
    run's newest id (the client saw a forgotten run of the same id, or another broker) also
    gets a gap marker first, with M the id the run's next event will get: either way the client
    must resync. Without ``last_event_id`` a subscriber gets live events only.
done exactly once, and last
    Every subscriber gets ``{"type": "done"}`` exactly once, after every event it gets, and
    nothing after it; a subscriber of a closed run gets (its replay, then) ``done`` at once.
    ``close`` is idempotent; ``emit`` after ``close`` is dropped and counted in ``stats()``.
Cleanup
    A subscriber leaves by ``unsubscribe``, by receiving ``done``, or by being cut off; when the
    last one leaves, the run has no entry left in the subscriber map. ``unsubscribe`` after the
    broker let go, or of a queue it never knew, is a no-op. A subscriber whose queue refuses
    items (``asyncio.Queue.shutdown()``, Python 3.13+) is forgotten as if it had unsubscribed.
Bounded memory
    A closed run is remembered (for replay and for late subscribers) until more than
    ``retain_closed_runs`` runs closed after it or ``retain_closed_seconds`` passed (on the
    ``clock`` given; checked when runs are created, closed or looked up, never by a
    background task); then it is forgotten and its id is treated as a new run (ids start at 1
    again). A closed run whose ``done`` the loop has not delivered yet is kept until it has
    been, without holding up the eviction of the others. An open run keeps at most
    ``replay_size`` events for replay. A subscriber's queue holds at most ``max_backlog``
    undelivered items: one whose queue is full when another item is due has not read what it
    was given, and is cut off with ``{"type": "overflow", "limit": max_backlog}`` as its last
    item (instead of ``done``) and forgotten. The terminal item itself (``done`` or
    ``overflow``) is never refused, so a queue holds at most ``max_backlog + 1`` items. A
    subscriber that reads is never cut off, however far the producers run ahead of the loop:
    the events the loop has not handed it yet wait in the broker, once per run whatever the
    number of subscribers, so a burst costs memory in proportion to how far the loop is behind.
    A stalled loop is bounded by time: once the loop has taken nothing for ``stall_seconds``
    (on the ``clock`` given) while ``max_backlog`` or more events waited, the subscribers more
    than ``max_backlog`` events behind are cut off (each keeps the ``max_backlog`` it gets
    before the marker) and the run keeps only its newest ``max_backlog`` waiting events, then
    at most ``2 * max_backlog`` for as long as the stall lasts. A stall thus costs what the
    producers emit in ``stall_seconds``, and no more. A burst cannot trip it, however large:
    the loop still flushes between the producers' GIL slices, milliseconds apart.
    Producers never block on subscribers. Open runs are the application's to close.
Thread-safety
    ``emit``, ``close``, ``unsubscribe``, ``n_subscribers``, ``is_done``, ``stats`` and
    ``bind_loop`` may be called from any thread; ``subscribe`` and the queues belong to the loop
    thread. No exception from the delivery machinery reaches a producer thread or a loop
    callback; bad arguments raise ``TypeError``/``ValueError`` at the call site and change
    nothing.
No loop, closed loop
    Before a loop is bound (``bind_loop``, or the first ``subscribe`` binds the running loop)
    there can be no subscribers: ``emit`` and ``close`` record ids, the replay buffer and the
    closed state, and deliver nothing. If the loop is closed, what could not be delivered is
    dropped and counted, its subscribers are forgotten, and a new loop may be bound; binding a
    second loop while the first is open raises ``ValueError``, binding something that is not an
    event loop ``TypeError``.
Speed
    ``emit`` costs the same whatever the number of subscribers: it wakes the loop at most once
    per batch, and the loop hands each subscriber a whole batch in one call.

Delivered event dicts are shared by all subscribers and the replay buffer: treat them as
read-only. Use :func:`is_terminal` to recognise the end of a stream.
"""

from broker.core import BrokerStats, RunBroker
from broker.eventqueue import EventQueue
from broker.events import (
    TERMINAL_TYPES,
    Event,
    done_marker,
    gap_marker,
    is_terminal,
    overflow_marker,
)
from broker.subscription import Subscription

__all__ = [
    "TERMINAL_TYPES",
    "BrokerStats",
    "Event",
    "EventQueue",
    "RunBroker",
    "Subscription",
    "default_broker",
    "done_marker",
    "gap_marker",
    "is_terminal",
    "overflow_marker",
]

default_broker = RunBroker()
"""The module-level instance for applications that need only one."""
