"""``RunBroker``: the state, the one lock, and the batched hand-off from producers to the loop.

What it promises is the contract in the package docstring. How it keeps it:

* One ``threading.Lock`` guards all state. Under it, ``emit`` (any thread) gives the event its
  id, keeps it in the run's replay buffer and, if the run has subscribers, appends it to the
  run's pending list; ``close`` marks the run closed. Either schedules a flush with a single
  ``loop.call_soon_threadsafe`` if none is scheduled yet: the producer's cost does not depend on
  the number of subscribers, and the loop is woken at most once per batch.
* The flush runs on the loop thread and, under the lock, hands each subscriber queue the run's
  pending events it has room for (up to ``max_backlog`` items in its queue), with one
  ``EventQueue.put_batch`` call, followed by ``done`` once it has every event of a closed run.
  One flush hands out about ``max_backlog`` events per run, spread over its subscribers (at
  least 256 each), so the loop turn it starts stays short however many subscribers read.
  What does not fit stays in the run's pending list, which holds every event some subscriber
  has not been handed yet, and the flush schedules itself again with ``loop.call_soon``: the
  readers woken by this flush run before it, so a reader that empties its queue whenever it runs
  is topped up again and never cut off, however far the producers are ahead of the loop.
* A subscriber is cut off only when its own queue already holds ``max_backlog`` items and it is
  owed another one: it has not read what it was given. A burst that the loop takes in one flush
  is not held against anyone; it waits in the pending list, once per run however many
  subscribers there are.
* Ids are assigned under the lock, so they are 1, 2, 3, ... in the order the lock was taken; the
  same order is the order of the replay buffer and of every delivery.
* A subscriber records the highest id it already has (its replay, or the run's newest id when it
  subscribed); the flush gives it only events with larger ids. That is the seam between a pending
  batch and a new subscriber: no duplicate, no event from before a live-only subscribe.
* A closed run stays (for replay and to answer late subscribers with ``done``) until it is evicted
  by count or by age; a closed run whose ``done`` is still pending is skipped by eviction (not
  forgotten before its subscribers have their ``done``, so the subscriber map only ever holds
  subscribers of the current incarnation of a run id) without holding up the runs behind it.
* A stalled loop (blocked by a sync call, or stopped) is told from a burst by time, never by a
  count: every ``max_backlog`` events appended to a run's pending list, ``emit`` reads the clock.
  The first such reading after a flush starts the stall clock; the flush stops it. If a later
  one finds it ``stall_seconds`` old, the loop has taken nothing for that long: the subscribers
  owed more than ``max_backlog`` events are cut off there and then, keeping the ``max_backlog``
  they get before the marker, and the run keeps only the last ``max_backlog`` pending events.
  A burst cannot trip it, however many events it emits: the loop still gets the GIL and
  flushes within a switch interval or two (milliseconds). A stall costs what the producers emit
  in ``stall_seconds``, then at most ``2 * max_backlog`` pending events per run.
* A subscriber whose queue refuses items (``asyncio.Queue.shutdown()``, Python 3.13+) is
  forgotten, as if it had unsubscribed; the flush goes on for everyone else.
"""

from __future__ import annotations

import asyncio
import threading
import time
from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from operator import itemgetter

from broker.eventqueue import EventQueue
from broker.events import Event, done_marker, gap_marker, overflow_marker
from broker.subscription import Subscription

_event_id = itemgetter("id")
# A plain dict whatever subclass of dict it copies; with a setitem, faster than dict(e, id=...).
_copy_dict = dict.copy
# The fewest events a flush hands a subscriber that is owed more (unless its queue is fuller): a
# reader task's wake-up is paid for by at least this many items.
_MIN_CHUNK = 256


@dataclass(frozen=True, slots=True)
class BrokerStats:
    """Counters since the broker was created, and the current sizes of its state."""

    emitted: int
    """Events accepted (given an id)."""
    dropped_after_close: int
    """Events emitted to a closed run, and dropped."""
    dropped_loop_closed: int
    """Items that had subscribers but could not be delivered because the loop was closed."""
    overflowed: int
    """Subscribers cut off with the overflow marker."""
    forgotten_runs: int
    """Closed runs evicted by the retention limits."""
    open_runs: int
    closed_runs: int
    subscribers: int
    stalls: int
    """Times ``emit`` found the loop had taken nothing for ``stall_seconds``, and trimmed a run."""
    pending: int
    """Events held for subscribers that have not been handed them yet (one per event and run,
    plus the items kept for subscribers cut off while the loop stalled)."""


class _Run:
    """Per-run state; lives while the run is open and for the retention window after close."""

    __slots__ = ("closed", "closed_at", "dirty", "last_id", "pending", "replay", "run_id")

    def __init__(self, run_id: Hashable, replay_size: int) -> None:
        self.run_id = run_id
        self.last_id = 0
        self.replay: deque[Event] = deque(maxlen=replay_size)
        self.closed = False
        self.closed_at = 0.0
        # Events not yet handed to the loop; `dirty` says the run is in RunBroker._dirty.
        self.pending: list[Event] = []
        self.dirty = False


def _unhashable(run_id: object) -> TypeError:
    return TypeError(f"run_id must be hashable, got {type(run_id).__name__} {run_id!r}")


def _check_last_event_id(last_event_id: object) -> None:
    if last_event_id is None:
        return
    if isinstance(last_event_id, bool) or not isinstance(last_event_id, int):
        raise TypeError(f"last_event_id must be an int or None, got {type(last_event_id).__name__}")
    if last_event_id < 0:
        raise ValueError(f"last_event_id must be >= 0, got {last_event_id}")


class RunBroker:
    """Fans events from producer threads out to asyncio subscribers, with ids and replay.

    ``replay_size``: events kept per run for ``last_event_id`` replay. ``max_backlog``: undelivered
    items a subscriber may hold before it is cut off. ``stall_seconds``: how long the loop may
    take nothing (measured with ``clock``) while events pile up before it counts as stalled and
    the subscribers more than ``max_backlog`` behind are cut off. ``retain_closed_runs`` and
    ``retain_closed_seconds``: how many closed runs are remembered, and for how long (measured
    with ``clock``); after that the run id is treated as new.
    """

    def __init__(
        self,
        *,
        replay_size: int = 1000,
        max_backlog: int = 10_000,
        retain_closed_runs: int = 1000,
        retain_closed_seconds: float = 300.0,
        stall_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("replay_size", replay_size),
            ("max_backlog", max_backlog),
            ("retain_closed_runs", retain_closed_runs),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        for name, seconds in (
            ("retain_closed_seconds", retain_closed_seconds),
            ("stall_seconds", stall_seconds),
        ):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
                raise TypeError(
                    f"{name} must be a number of seconds, got {type(seconds).__name__} {seconds!r}"
                )
            if not seconds > 0:
                raise ValueError(f"{name} must be positive, got {seconds!r}")
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {type(clock).__name__}")
        self._replay_size = replay_size
        self._max_backlog = max_backlog
        self._retain_runs = retain_closed_runs
        self._retain_seconds = retain_closed_seconds
        self._stall_seconds = stall_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runs: dict[Hashable, _Run] = {}
        # run id -> {queue: highest id the subscriber has been handed, or, for a subscriber cut
        # off while the loop was stalled, the items it gets before its overflow marker}. Holds
        # only runs that have subscribers; kept apart from _runs because an open run outlives
        # its subscribers.
        self._subscribers: dict[Hashable, dict[EventQueue, int | list[Event]]] = {}
        self._closed: OrderedDict[Hashable, _Run] = OrderedDict()
        self._dirty: list[_Run] = []
        # Closed runs in _dirty: their done is not delivered yet, so retention keeps them
        # beside the retain_closed_runs others.
        self._closed_dirty = 0
        self._flush_scheduled = False
        # When emit first saw max_backlog more events waiting since the last flush; None while
        # the loop keeps flushing.
        self._stall_since: float | None = None
        # Events emitted to runs since forgotten; stats() adds the live runs' last ids.
        self._emitted_forgotten = 0
        self._dropped_after_close = 0
        self._dropped_loop_closed = 0
        self._overflowed = 0
        self._forgotten = 0
        self._stalls = 0

    # -- the loop ---------------------------------------------------------------------------

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver on ``loop``. Binding the bound loop again is a no-op; binding another one
        raises ``ValueError`` unless the bound loop is closed (then its subscribers are dropped
        and the broker moves to ``loop``). ``TypeError`` if ``loop`` is not an event loop."""
        if not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(f"loop must be an asyncio event loop, got {type(loop).__name__}")
        with self._lock:
            self._bind_locked(loop)

    def _bind_locked(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop:
            return
        if self._loop is not None:
            if not self._loop.is_closed():
                raise ValueError(
                    f"this broker is bound to event loop {self._loop!r}; it cannot also "
                    f"deliver on {loop!r}"
                )
            self._detach_loop_locked()
        self._loop = loop

    def _detach_loop_locked(self) -> None:
        # The bound loop is closed: nobody can read its queues any more.
        for run in self._dirty:
            self._dropped_loop_closed += len(run.pending)
            run.pending = []
            run.dirty = False
        self._dirty = []
        self._closed_dirty = 0
        self._subscribers.clear()
        self._flush_scheduled = False
        # The next loop starts with a clean slate: a stall of this one is not its stall.
        self._stall_since = None
        self._loop = None

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.call_soon_threadsafe(self._flush)
        except RuntimeError:
            # The loop is closed; the producer must not see it.
            with self._lock:
                if self._loop is loop:
                    self._detach_loop_locked()

    # -- producers --------------------------------------------------------------------------

    def emit(self, run_id: Hashable, event: Event) -> None:
        """Give ``event`` the run's next id and deliver a copy of it to the run's subscribers.

        Any thread. Never blocks on subscribers. Dropped (and counted) if the run is closed.
        ``TypeError`` if ``event`` is not a dict or ``run_id`` is unhashable; ``ValueError`` if
        ``event`` has an ``"id"`` key (the broker assigns ids).
        """
        if not isinstance(event, dict):
            raise TypeError(f"event must be a dict, got {type(event).__name__}")
        if "id" in event:
            raise ValueError('event must not have an "id" key: the broker assigns ids')
        wake = None
        lock = self._lock
        # acquire/release rather than `with`: a fifth less time per emit, the hottest call.
        lock.acquire()
        try:
            try:
                run = self._runs.get(run_id)
            except TypeError:
                raise _unhashable(run_id) from None
            if run is None or run.closed:
                run = self._open_run_locked(run_id, run)
                if run is None:
                    self._dropped_after_close += 1
                    return
            run.last_id = event_id = run.last_id + 1
            item = _copy_dict(event)
            item["id"] = event_id
            run.replay.append(item)
            if run_id in self._subscribers:
                pending = run.pending
                pending.append(item)
                if not run.dirty:
                    # The run's first event since the last flush; a dirty run implies a
                    # scheduled flush, so the common case skips the check below.
                    run.dirty = True
                    self._dirty.append(run)
                    if not self._flush_scheduled:
                        self._flush_scheduled = True
                        wake = self._loop
                elif not len(pending) % self._max_backlog:
                    self._check_stall_locked(run)
        finally:
            lock.release()
        if wake is not None:
            self._wake(wake)

    def close(self, run_id: Hashable) -> None:
        """Mark the run closed: its subscribers get ``done`` after the events emitted before.

        Any thread. Idempotent. Closing a run never emitted to still records it as closed.
        """
        wake = None
        with self._lock:
            run = self._lookup_locked(run_id)
            if run is None:
                run = self._new_run_locked(run_id)
            elif run.closed:
                return
            run.closed = True
            run.closed_at = self._clock()
            self._closed[run_id] = run
            if run_id in self._subscribers:
                if not run.dirty:
                    run.dirty = True
                    self._dirty.append(run)
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    wake = self._loop
            if run.dirty:
                self._closed_dirty += 1
            self._evict_locked(run.closed_at)
        if wake is not None:
            self._wake(wake)

    # -- subscribers ------------------------------------------------------------------------

    def subscribe(self, run_id: Hashable, last_event_id: int | None = None) -> EventQueue:
        """A new queue that gets the run's events from now on, then ``done``.

        Call it on the event loop thread; the first call binds the running loop if none is bound
        (``RuntimeError`` if no loop is running and none is bound, or the bound one is closed).
        With ``last_event_id=N`` the queue first gets the buffered events with ids above ``N``,
        after a gap marker if some of them were evicted, or if ``N`` is beyond the run's newest
        id (the ids come from a forgotten run of the same id, or from another broker). If the
        run is closed, the queue gets (that replay and) ``done`` at once and is not registered.
        Unsubscribe when done reading.
        """
        _check_last_event_id(last_event_id)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        queue = EventQueue()
        with self._lock:
            run = self._lookup_locked(run_id)
            if running is not None:
                self._bind_locked(running)
            elif self._loop is None or self._loop.is_closed():
                state = "none is bound" if self._loop is None else "the bound one is closed"
                raise RuntimeError(
                    "subscribe() must be called on the event loop thread (no loop is running "
                    f"here and {state})"
                )
            items = self._replay_locked(run, last_event_id)
            if len(items) > self._max_backlog:
                del items[self._max_backlog :]
                items.append(overflow_marker(self._max_backlog))
                self._overflowed += 1
            elif run is not None and run.closed:
                items.append(done_marker())
            else:
                self._subscribers.setdefault(run_id, {})[queue] = 0 if run is None else run.last_id
            queue.put_batch(items)
        return queue

    def _replay_locked(self, run: _Run | None, last_event_id: int | None) -> list[Event]:
        if last_event_id is None:
            return []
        last_id = 0 if run is None else run.last_id
        if last_event_id >= last_id:
            if last_event_id == last_id:
                return []
            # The client saw ids this run never gave: the events it is missing are not here.
            return [gap_marker(last_event_id, last_id + 1)]
        assert run is not None
        buffered = run.replay
        first_id: int = buffered[0]["id"]
        if last_event_id < first_id - 1:
            return [gap_marker(last_event_id, first_id), *buffered]
        return list(buffered)[last_event_id - first_id + 1 :]

    def unsubscribe(self, run_id: Hashable, queue: asyncio.Queue[Event]) -> None:
        """Stop delivering to ``queue``. A no-op if it is not subscribed to ``run_id`` (never
        was, already left, or the broker let it go after ``done`` or ``overflow``)."""
        with self._lock:
            try:
                subscribers = self._subscribers.get(run_id)
            except TypeError:
                raise _unhashable(run_id) from None
            if (
                subscribers is None
                or not isinstance(queue, EventQueue)
                or subscribers.pop(queue, None) is None
            ):
                return
            if not subscribers:
                del self._subscribers[run_id]

    def subscription(self, run_id: Hashable, last_event_id: int | None = None) -> Subscription:
        """``async with broker.subscription(run_id) as sub: async for item in sub: ...``

        Subscribes on entry, yields every item up to and including the terminal one, and
        unsubscribes on exit, error or cancellation. A bad ``last_event_id`` raises here.
        """
        _check_last_event_id(last_event_id)
        return Subscription(self, run_id, last_event_id)

    # -- the loop side ----------------------------------------------------------------------

    def _flush(self) -> None:
        with self._lock:
            dirty = self._dirty
            self._dirty = []
            self._flush_scheduled = False
            self._stall_since = None
            for run in dirty:
                subscribers = self._subscribers.get(run.run_id)
                if subscribers is not None and self._fan_out_locked(run, subscribers):
                    # Someone is still owed events that did not fit: the run stays dirty.
                    self._dirty.append(run)
                    continue
                run.pending = []
                run.dirty = False
                if run.closed:
                    self._closed_dirty -= 1
            if self._dirty and self._loop is not None:
                # call_soon, not a wake from a producer: the readers this flush woke run first,
                # and the next flush tops up what they read.
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
            if len(self._closed) > self._retain_runs:
                self._evict_locked(self._clock())

    def _fan_out_locked(self, run: _Run, subscribers: dict[EventQueue, int | list[Event]]) -> bool:
        """Hand each subscriber what it is owed and has room for; True if some is still owed."""
        pending = run.pending
        first_id = pending[0]["id"] if pending else 0
        last_id = pending[-1]["id"] if pending else 0
        limit = self._max_backlog
        # One flush hands out about max_backlog events per run, spread over its subscribers: the
        # loop turn it starts (the flush, then every reader it woke) stays short however many
        # subscribers there are, so the loop comes back for the next flush within milliseconds.
        chunk = max(limit // len(subscribers), min(limit, _MIN_CHUNK))
        for queue, after in list(subscribers.items()):
            items: list[Event]
            # max(): a reader that put items of its own into the queue must not make the
            # slices below count from the end.
            room = max(limit - queue.qsize(), 0)
            if isinstance(after, list):
                items = after[:room]
                items.append(overflow_marker(limit))
                del subscribers[queue]
                self._overflowed += 1
            else:
                if after >= last_id:
                    start = len(pending)
                elif after < first_id:
                    start = 0
                else:
                    # Events up to `after` were pending when this subscriber arrived (it already
                    # has them, or must not get them), or it was handed them by an earlier flush.
                    start = bisect_right(pending, after, key=_event_id)
                owed = len(pending) - start
                take = min(room, chunk)
                if owed > take:
                    if not room:
                        # Its queue holds max_backlog items it has not read, and one more is due.
                        items = [overflow_marker(limit)]
                        del subscribers[queue]
                        self._overflowed += 1
                    else:
                        items = pending[start : start + take]
                        subscribers[queue] = items[-1]["id"]
                else:
                    items = pending[start:] if start else pending
                    subscribers[queue] = last_id
                    if run.closed:
                        items = [*items, done_marker()]
                        del subscribers[queue]
            try:
                queue.put_batch(items)
            except Exception:
                # The reader shut its queue down: it has left, whatever it was owed.
                subscribers.pop(queue, None)
        if not subscribers:
            del self._subscribers[run.run_id]
        # Every subscriber left now has a cursor; pending keeps what the furthest behind lacks.
        behind = [after for after in subscribers.values() if isinstance(after, int)]
        if not behind or min(behind) >= last_id:
            return False
        del pending[: bisect_right(pending, min(behind), key=_event_id)]
        return True

    def _check_stall_locked(self, run: _Run) -> None:
        """A multiple of ``max_backlog`` events is pending for ``run``: has the loop stalled?"""
        self._check_loop_locked()
        subscribers = self._subscribers.get(run.run_id)
        if subscribers is None:
            return
        now = self._clock()
        if self._stall_since is None:
            self._stall_since = now
            return
        if now - self._stall_since < self._stall_seconds:
            return
        limit = self._max_backlog
        pending = run.pending
        if len(pending) <= limit:
            return
        self._stalls += 1
        # A subscriber owed more than `limit` of these events is cut off: it keeps the items
        # it gets before the marker at the next flush. Everyone else is owed only events among
        # the last `limit`.
        for queue, after in subscribers.items():
            if not isinstance(after, list):
                start = bisect_right(pending, after, key=_event_id)
                if len(pending) - start > limit:
                    subscribers[queue] = pending[start : start + limit]
        del pending[:-limit]

    def _check_loop_locked(self) -> None:
        if self._loop is not None and self._loop.is_closed():
            self._detach_loop_locked()

    # -- runs and retention -----------------------------------------------------------------

    def _lookup_locked(self, run_id: Hashable) -> _Run | None:
        try:
            run = self._runs.get(run_id)
        except TypeError:
            raise _unhashable(run_id) from None
        if run is not None and run.closed:
            now = self._clock()
            if self._expired(run, now):
                self._evict_locked(now)
                return self._runs.get(run_id)
        return run

    def _open_run_locked(self, run_id: Hashable, run: _Run | None) -> _Run | None:
        """The open run to emit to: a new one if ``run`` is unknown or expired, else None."""
        if run is not None:
            now = self._clock()
            if not self._expired(run, now):
                return None
            self._evict_locked(now)
            if run_id in self._runs:
                return None
        return self._new_run_locked(run_id)

    def _new_run_locked(self, run_id: Hashable) -> _Run:
        if self._closed:
            self._evict_locked(self._clock())
        run = self._runs[run_id] = _Run(run_id, self._replay_size)
        return run

    def _expired(self, run: _Run, now: float) -> bool:
        return now - run.closed_at >= self._retain_seconds

    def _evict_locked(self, now: float) -> None:
        if self._closed_dirty:
            # A done that a closed loop will never deliver must not keep its run.
            self._check_loop_locked()
        closed = self._closed
        excess = len(closed) - self._closed_dirty - self._retain_runs
        evicted: list[_Run] = []
        for run in closed.values():
            if excess <= 0 and not self._expired(run, now):
                break
            if run.dirty:
                # Its done is still pending: it stays until the flush delivers it, and the runs
                # behind it are evicted meanwhile.
                continue
            evicted.append(run)
            excess -= 1
        for run in evicted:
            del closed[run.run_id]
            del self._runs[run.run_id]
            self._forgotten += 1
            self._emitted_forgotten += run.last_id

    # -- introspection ----------------------------------------------------------------------

    def n_subscribers(self, run_id: Hashable) -> int:
        """How many subscribers the run has now (0 for an unknown run)."""
        with self._lock:
            try:
                return len(self._subscribers.get(run_id, ()))
            except TypeError:
                raise _unhashable(run_id) from None

    def is_done(self, run_id: Hashable) -> bool:
        """True if the run was closed and is still remembered."""
        with self._lock:
            run = self._lookup_locked(run_id)
            return run is not None and run.closed

    def stats(self) -> BrokerStats:
        """A snapshot of the counters and sizes."""
        with self._lock:
            return BrokerStats(
                emitted=self._emitted_forgotten + sum(run.last_id for run in self._runs.values()),
                dropped_after_close=self._dropped_after_close,
                dropped_loop_closed=self._dropped_loop_closed,
                overflowed=self._overflowed,
                forgotten_runs=self._forgotten,
                open_runs=len(self._runs) - len(self._closed),
                closed_runs=len(self._closed),
                subscribers=sum(map(len, self._subscribers.values())),
                stalls=self._stalls,
                pending=sum(len(run.pending) for run in self._runs.values())
                + sum(
                    len(after)
                    for subscribers in self._subscribers.values()
                    for after in subscribers.values()
                    if isinstance(after, list)
                ),
            )
