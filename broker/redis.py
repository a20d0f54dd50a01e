"""``RedisRunBroker``: the ``RunBroker`` API and contract, with the runs kept in Redis Streams.

Install with the ``runbroker[redis]`` extra. Use it when producers and SSE handlers live in
different processes (several uvicorn workers, several hosts): every process that makes a
``RedisRunBroker`` with the same ``url`` and ``namespace`` sees the same runs.

How a run is kept (``N`` is the run's newest event id):

* ``<namespace>:s:<run_id>``, a stream: event ``k`` is the entry ``k-1`` (its JSON in field
  ``e``); ``close`` appends the terminal entry ``N-2``. Ids are given by a Lua script that
  increments the run's counter and appends in one step, so they are 1, 2, 3, ... across every
  process, in the order Redis ran the emits. Each emit trims the stream to about
  ``replay_size`` entries (``MAXLEN ~``: Redis trims whole nodes, so a little more is kept).
* ``<namespace>:m:<run_id>``, a hash: ``n`` (the newest id) and ``c`` (set once closed).
  ``close`` sets ``c`` and gives both keys a TTL of ``retain_closed_seconds``; after it the
  run is forgotten and its id is a new run (ids start at 1 again). Open runs have no TTL: they
  are the application's to close.

What it promises beyond the package docstring's contract, and where it differs:

* ``emit`` and ``close`` (any thread, sync client with a connection pool) never retry: if Redis
  cannot be reached or does not answer within ``socket_timeout`` they raise
  :class:`BrokerUnavailable` (the event or close may or may not have been recorded, if the
  connection broke after the command was sent) and count it in ``stats()``. They never hang.
* ``subscribe`` without ``last_event_id`` makes one round trip to Redis (on the loop thread,
  bounded by ``socket_timeout``) to read the run's newest id and closed flag: that is the only
  way to order the subscription against emits made in other processes, and so to promise that
  every event emitted after ``subscribe`` returned is delivered, while a subscriber of a
  closed run gets ``done`` at once and nothing else. ``BrokerUnavailable`` if Redis is down.
  With ``last_event_id`` it makes no round trip: the reader task reads the replay.
* One reader task per broker (on the bound loop) reads every subscribed run with one
  ``XREAD BLOCK`` (plus a private wake-up stream, so that a new run or a replay request is
  picked up at once) and fans out to the local queues: Redis connections do not grow with
  subscribers. A subscriber records the highest id it has; the reader gives it only later
  ones, so there is no hole and no duplicate at the seam between replay and live events.
* If the reader's connection breaks (``CLIENT KILL``, a Redis restart), it reconnects with
  backoff and resumes every run from the last id it delivered: nothing is lost as long as
  Redis kept the entries (AOF on for restarts). Entries trimmed meanwhile are reported to the
  subscribers that miss them with a ``gap`` marker *in the middle* of their stream (the one
  place a gap marker comes after events). A Redis that restarts without persistence loses
  its runs; their subscribers are not told.
* Slow consumers: as ``RunBroker``, a subscriber that would hold more than ``max_backlog``
  undelivered items is cut off with the ``overflow`` marker.
* Run ids are ``str``. Events are JSON-encoded: a delivered event is what ``json`` makes of
  the emitted dict (tuples become lists, non-``str`` keys become strings), each subscriber's
  copy shared with the others (treat it as read-only). ``TypeError`` for an event ``json``
  cannot encode.
* ``n_subscribers`` counts this process's subscribers. ``is_done`` asks Redis.
* ``aclose()`` (on the loop) stops the reader and closes the connections.

Each instance gets a random ``namespace`` unless one is given, so tests and examples on one
server never see each other's runs; processes that share runs must pass the same one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import uuid
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from broker.eventqueue import EventQueue
from broker.events import Event, done_marker, gap_marker, overflow_marker
from broker.subscription import Subscription

__all__ = ["URL_ENV", "BrokerUnavailable", "RedisBrokerStats", "RedisRunBroker"]

URL_ENV = "RUNBROKER_REDIS_URL"
"""The environment variable read for the Redis URL when none is given."""

_event_id = itemgetter("id")

# KEYS: stream, meta. ARGV: the event's JSON, the replay window. 0 if the run is closed.
_EMIT = """
if redis.call('HEXISTS', KEYS[2], 'c') == 1 then return 0 end
local n = redis.call('HINCRBY', KEYS[2], 'n', 1)
-- A new run: a stream left by an expired one (its key may expire a moment later) goes first.
if n == 1 then redis.call('DEL', KEYS[1]) end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], n .. '-1', 'e', ARGV[1])
return n
"""

# KEYS: stream, meta. ARGV: retention in ms. 0 if the run was closed already.
_CLOSE = """
if redis.call('HEXISTS', KEYS[2], 'c') == 1 then return 0 end
local n = redis.call('HGET', KEYS[2], 'n') or '0'
if n == '0' then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[2], 'c', '1', 'n', n)
redis.call('XADD', KEYS[1], n .. '-2', 'd', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"""


class BrokerUnavailable(ConnectionError):
    """Redis could not be reached, or did not answer in time. Raised by ``emit``, ``close``,
    ``is_done`` and a live-only ``subscribe``; for ``emit`` and ``close`` the command may or
    may not have taken effect."""


@dataclass(frozen=True, slots=True)
class RedisBrokerStats:
    """This broker instance's counters since it was created, and its current local sizes."""

    emitted: int
    """Events this instance's ``emit`` calls recorded."""
    dropped_after_close: int
    """Events this instance emitted to a closed run, and dropped."""
    failed_calls: int
    """``emit``/``close``/``is_done``/``subscribe`` calls that raised ``BrokerUnavailable``."""
    overflowed: int
    """Local subscribers cut off with the overflow marker."""
    reader_reconnects: int
    """Times the reader task lost its connection and reconnected."""
    subscribers: int
    """Local subscribers now."""
    runs_read: int
    """Runs the reader task follows now."""


class _Sub:
    """A local subscriber: the highest id it has (or must not get), and whether it still waits
    for the reader task to read its replay."""

    __slots__ = ("after", "ready")

    def __init__(self, after: int, ready: bool) -> None:
        self.after = after
        self.ready = ready


def _check_run_id(run_id: object) -> str:
    if not isinstance(run_id, str):
        raise TypeError(f"run_id must be a str, got {type(run_id).__name__} {run_id!r}")
    return run_id


def _check_last_event_id(last_event_id: object) -> None:
    if last_event_id is None:
        return
    if isinstance(last_event_id, bool) or not isinstance(last_event_id, int):
        raise TypeError(f"last_event_id must be an int or None, got {type(last_event_id).__name__}")
    if last_event_id < 0:
        raise ValueError(f"last_event_id must be >= 0, got {last_event_id}")


def _positive(name: str, value: object, kind: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    assert isinstance(value, int | float)
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


def _entry(entry_id: bytes) -> tuple[int, int]:
    """(event id, kind) of a stream entry id: kind 1 is an event, 2 the terminal entry."""
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq)


class RedisRunBroker:
    """``RunBroker``'s API over Redis Streams; see the module docstring.

    ``url`` (else ``$RUNBROKER_REDIS_URL``): the server. ``namespace``: the key prefix shared by
    the processes that share runs (random by default). ``replay_size``, ``max_backlog`` and
    ``retain_closed_seconds`` as for ``RunBroker``. ``socket_timeout``: how long a call may wait
    for Redis before it raises ``BrokerUnavailable``. ``block_seconds``: how long one
    ``XREAD BLOCK`` waits. ``reconnect_delay``: the reader's first and longest backoff.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str | None = None,
        replay_size: int = 1000,
        max_backlog: int = 10_000,
        retain_closed_seconds: float = 300.0,
        socket_timeout: float = 5.0,
        block_seconds: float = 10.0,
        reconnect_delay: tuple[float, float] = (0.01, 1.0),
        read_count: int = 1000,
    ) -> None:
        if url is None:
            url = os.environ.get(URL_ENV)
            if not url:
                raise ValueError(
                    f"RedisRunBroker needs a Redis URL: pass url=... or set {URL_ENV} "
                    "(e.g. redis://127.0.0.1:6379/0)"
                )
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {type(url).__name__}")
        for name, value in (
            ("replay_size", replay_size),
            ("max_backlog", max_backlog),
            ("read_count", read_count),
        ):
            _positive(name, value, int)
        for name, number in (
            ("retain_closed_seconds", retain_closed_seconds),
            ("socket_timeout", socket_timeout),
            ("block_seconds", block_seconds),
            ("reconnect_delay[0]", reconnect_delay[0]),
            ("reconnect_delay[1]", reconnect_delay[1]),
        ):
            _positive(name, number, (int, float))
        if namespace is None:
            namespace = f"runbroker:{uuid.uuid4().hex[:16]}"
        if not isinstance(namespace, str) or not namespace:
            raise TypeError(f"namespace must be a non-empty str, got {namespace!r}")
        self.url = url
        self.namespace = namespace
        self._replay_size = replay_size
        self._max_backlog = max_backlog
        self._retain_ms = max(1, int(retain_closed_seconds * 1000))
        self._socket_timeout = socket_timeout
        self._block_ms = max(1, int(block_seconds * 1000))
        self._reconnect_delay = reconnect_delay
        self._read_count = read_count
        self._stream_prefix = f"{namespace}:s:".encode()
        self._meta_prefix = f"{namespace}:m:".encode()
        self._wake_key = f"{namespace}:w:{uuid.uuid4().hex}".encode()
        # The producer side: a thread-safe pool; no retries (an emit must not be doubled).
        self._sync = redis.Redis.from_url(
            url,
            protocol=2,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
            client_name=f"runbroker-producer:{namespace}",
        )
        self._emit_script = self._sync.register_script(_EMIT)
        self._close_script = self._sync.register_script(_CLOSE)
        self._lock = threading.Lock()
        # run id -> {queue: its _Sub}; only runs that have local subscribers.
        self._subscribers: dict[str, dict[EventQueue, _Sub]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Loop side only (the reader task and subscribe): what the reader follows.
        self._positions: dict[str, int] = {}
        self._reader: asyncio.Task[None] | None = None
        self._async: redis.asyncio.Redis | None = None
        self._changed = False
        self._blocking = False
        self._wake_sent = False
        self._wake_pos = b"0-0"
        self._idle: asyncio.Event | None = None
        # Set (and replaced) after every round of the reader task: what flush() waits on.
        self._progress: asyncio.Event | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False
        self._emitted = 0
        self._dropped_after_close = 0
        self._failed = 0
        self._overflowed = 0
        self._reconnects = 0

    # -- keys -------------------------------------------------------------------------------

    def _keys(self, run_id: str) -> tuple[bytes, bytes]:
        encoded = run_id.encode()
        return self._stream_prefix + encoded, self._meta_prefix + encoded

    def _unavailable(self, what: str, error: RedisError) -> BrokerUnavailable:
        with self._lock:
            self._failed += 1
        return BrokerUnavailable(f"{what}: Redis at {self.url} is unavailable ({error})")

    # -- producers --------------------------------------------------------------------------

    def emit(self, run_id: str, event: Event) -> None:
        """Record ``event`` as the run's next event; every subscriber of the run, in any
        process, gets it. Any thread. Dropped (and counted) if the run is closed.
        ``TypeError``/``ValueError`` as for ``RunBroker``, ``TypeError`` if ``json`` cannot
        encode it, ``BrokerUnavailable`` if Redis cannot be reached (never a hang)."""
        _check_run_id(run_id)
        if not isinstance(event, dict):
            raise TypeError(f"event must be a dict, got {type(event).__name__}")
        if "id" in event:
            raise ValueError('event must not have an "id" key: the broker assigns ids')
        try:
            payload = json.dumps(event, separators=(",", ":"))
        except (TypeError, ValueError) as error:
            raise TypeError(f"event must be JSON-serialisable: {error}") from None
        try:
            event_id = self._emit_script(
                keys=list(self._keys(run_id)), args=[payload, self._replay_size]
            )
        except (RedisConnectionError, RedisTimeoutError) as error:
            raise self._unavailable(f"emit to {run_id!r}", error) from error
        with self._lock:
            if event_id:
                self._emitted += 1
            else:
                self._dropped_after_close += 1

    def close(self, run_id: str) -> None:
        """Mark the run closed: its subscribers get ``done`` after its events. Any thread.
        Idempotent. ``BrokerUnavailable`` if Redis cannot be reached."""
        _check_run_id(run_id)
        try:
            self._close_script(keys=list(self._keys(run_id)), args=[self._retain_ms])
        except (RedisConnectionError, RedisTimeoutError) as error:
            raise self._unavailable(f"close of {run_id!r}", error) from error

    # -- subscribers ------------------------------------------------------------------------

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver on ``loop`` (any thread): the reader task starts on it. Binding the bound
        loop again is a no-op; another one raises ``ValueError`` unless the bound one is closed
        (then its subscribers are dropped). ``TypeError`` if ``loop`` is not an event loop."""
        if not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(f"loop must be an asyncio event loop, got {type(loop).__name__}")
        with self._lock:
            if self._loop is loop:
                return
            if self._loop is not None:
                if not self._loop.is_closed():
                    raise ValueError(
                        f"this broker is bound to event loop {self._loop!r}; it cannot also "
                        f"deliver on {loop!r}"
                    )
                self._detach_locked()
            self._loop = loop
        loop.call_soon_threadsafe(self._ensure_reader)

    def _detach_locked(self) -> None:
        self._subscribers.clear()
        self._positions.clear()
        self._reader = None
        self._async = None
        self._idle = None
        self._progress = None
        self._background.clear()
        self._blocking = self._wake_sent = False
        self._loop = None

    def _ensure_reader(self) -> None:
        """On the loop thread: start the reader task if it is not running."""
        if self._closed or (self._reader is not None and not self._reader.done()):
            return
        self._idle = asyncio.Event()
        self._progress = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(
            self._read_forever(), name=f"runbroker reader {self.namespace}"
        )

    def subscribe(self, run_id: str, last_event_id: int | None = None) -> EventQueue:
        """A new queue that gets the run's events from now on (from any process), then
        ``done``. On the loop thread. With ``last_event_id=N`` it first gets the events after
        ``N`` that the stream still has, after a gap marker if some are gone (or ``N`` is
        beyond the run's newest id), as ``RunBroker`` does. Without it, one round trip to Redis
        fixes where "from now on" starts; ``BrokerUnavailable`` if Redis is down. A subscriber
        of a closed run gets (its replay and) ``done``. Unsubscribe when done reading."""
        _check_run_id(run_id)
        _check_last_event_id(last_event_id)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is None:
            raise RuntimeError("subscribe() must be called on the event loop thread")
        if self._closed:
            raise RuntimeError("this broker was closed with aclose()")
        self.bind_loop(running)
        self._ensure_reader()
        queue = EventQueue()
        if last_event_id is None:
            try:
                newest, closed = self._sync.hmget(self._keys(run_id)[1], ["n", "c"])
            except (RedisConnectionError, RedisTimeoutError) as error:
                raise self._unavailable(f"subscribe to {run_id!r}", error) from error
            if closed is not None:
                queue.put_batch([done_marker()])
                return queue
            sub = _Sub(int(newest or 0), ready=True)
        else:
            sub = _Sub(last_event_id, ready=False)
        with self._lock:
            self._subscribers.setdefault(run_id, {})[queue] = sub
        if not sub.ready or run_id not in self._positions:
            self._poke()
        return queue

    def unsubscribe(self, run_id: str, queue: asyncio.Queue[Event]) -> None:
        """Stop delivering to ``queue`` (any thread). A no-op if it is not subscribed."""
        _check_run_id(run_id)
        with self._lock:
            subscribers = self._subscribers.get(run_id)
            if (
                subscribers is None
                or not isinstance(queue, EventQueue)
                or subscribers.pop(queue, None) is None
            ):
                return
            if not subscribers:
                del self._subscribers[run_id]

    def subscription(self, run_id: str, last_event_id: int | None = None) -> Subscription:
        """``async with broker.subscription(run_id) as sub: async for item in sub: ...``"""
        _check_last_event_id(last_event_id)
        return Subscription(self, run_id, last_event_id)

    # -- introspection ----------------------------------------------------------------------

    def n_subscribers(self, run_id: str) -> int:
        """How many subscribers the run has in this process now."""
        _check_run_id(run_id)
        with self._lock:
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: str) -> bool:
        """True if the run was closed and is still remembered (asks Redis)."""
        _check_run_id(run_id)
        try:
            return bool(self._sync.hexists(self._keys(run_id)[1], "c"))
        except (RedisConnectionError, RedisTimeoutError) as error:
            raise self._unavailable(f"is_done({run_id!r})", error) from error

    def stats(self) -> RedisBrokerStats:
        """A snapshot of this instance's counters and local sizes."""
        with self._lock:
            return RedisBrokerStats(
                emitted=self._emitted,
                dropped_after_close=self._dropped_after_close,
                failed_calls=self._failed,
                overflowed=self._overflowed,
                reader_reconnects=self._reconnects,
                subscribers=sum(map(len, self._subscribers.values())),
                runs_read=len(self._positions),
            )

    def client_names(self) -> tuple[str, str]:
        """The ``CLIENT SETNAME`` of the producer connections and of the reader's."""
        return f"runbroker-producer:{self.namespace}", f"runbroker-reader:{self.namespace}"

    # -- the loop side ----------------------------------------------------------------------

    def _poke(self) -> None:
        """On the loop thread: the reader must look at new subscribers before reading on."""
        self._changed = True
        if self._idle is not None:
            self._idle.set()
        if self._blocking and not self._wake_sent:
            self._wake_sent = True
            task = asyncio.get_running_loop().create_task(self._send_wake())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _send_wake(self) -> None:
        client = self._async
        if client is None:
            return
        try:
            async with client.pipeline(transaction=False) as pipe:
                pipe.xadd(self._wake_key, {"w": "1"}, maxlen=1)
                pipe.pexpire(self._wake_key, 60_000)
                await pipe.execute()
        except (RedisError, OSError):
            # The reader's own connection is failing too; it catches up when it reconnects.
            pass

    async def _read_forever(self) -> None:
        delay = self._reconnect_delay[0]
        while not self._closed:
            try:
                if self._async is None:
                    self._async = redis.asyncio.Redis.from_url(
                        self.url,
                        protocol=2,
                        socket_timeout=self._block_ms / 1000 + self._socket_timeout,
                        socket_connect_timeout=self._socket_timeout,
                        retry=Retry(NoBackoff(), 0),
                        client_name=self.client_names()[1],
                    )
                await self._read_once(self._async)
                delay = self._reconnect_delay[0]
            except (RedisError, OSError):
                if self._closed:
                    # redis-py may turn the cancellation from aclose() into a TimeoutError.
                    return
                # Connection lost or refused: start again from the positions delivered.
                self._blocking = self._wake_sent = False
                with self._lock:
                    self._reconnects += 1
                client, self._async = self._async, None
                if client is not None:
                    await _close_quietly(client)
                await asyncio.sleep(delay)  # retry pacing, not synchronisation
                delay = min(delay * 2, self._reconnect_delay[1])
            self._notify_progress()

    def _notify_progress(self) -> None:
        progress = self._progress
        if progress is not None:
            self._progress = asyncio.Event()
            progress.set()

    async def _read_once(self, client: redis.asyncio.Redis) -> None:
        """One round: replays for new subscribers, then one ``XREAD`` of every followed run."""
        self._changed = False
        await self._catch_up(client)
        self._notify_progress()
        if self._changed:
            return
        with self._lock:
            for run in [run for run in self._positions if run not in self._subscribers]:
                del self._positions[run]
        if not self._positions:
            assert self._idle is not None
            self._idle.clear()
            if not self._changed:
                await self._idle.wait()
            return
        streams: dict[Any, Any] = {self._wake_key: self._wake_pos}
        for run, position in self._positions.items():
            streams[self._keys(run)[0]] = f"{position}-1"
        self._blocking = True
        # RESP2 (protocol=2): a list of [key, entries] pairs, or None on timeout.
        response: Any = await client.xread(streams, count=self._read_count, block=self._block_ms)
        self._blocking = self._wake_sent = False
        for key, entries in response or ():
            if key == self._wake_key:
                self._wake_pos = entries[-1][0]
                continue
            run = key[len(self._stream_prefix) :].decode()
            self._deliver_live(run, entries)
        self._notify_progress()

    async def _catch_up(self, client: redis.asyncio.Redis) -> None:
        with self._lock:
            waiting = [
                (run, queue, sub)
                for run, subs in self._subscribers.items()
                for queue, sub in subs.items()
                if not sub.ready
            ]
        for run, queue, sub in waiting:
            stream, meta = self._keys(run)
            async with client.pipeline(transaction=True) as pipe:
                pipe.hmget(meta, ["n", "c"])
                pipe.xrange(stream, f"({sub.after}-1", "+", count=self._max_backlog + 1)
                (newest_raw, closed), entries = await pipe.execute()
            self._deliver_replay(run, queue, sub, int(newest_raw or 0), closed is not None, entries)
        with self._lock:
            for run, subs in self._subscribers.items():
                if run not in self._positions and subs:
                    ready = [sub.after for sub in subs.values() if sub.ready]
                    if ready:
                        self._positions[run] = min(ready)

    def _decode(self, entries: Sequence[Any]) -> tuple[list[Event], bool, int | None]:
        """(events, whether the terminal entry is among them, its newest id if so)."""
        events: list[Event] = []
        for entry_id, fields in entries:
            event_id, kind = _entry(entry_id)
            if kind == 2:
                return events, True, event_id
            event = json.loads(fields[b"e"])
            event["id"] = event_id
            events.append(event)
        return events, False, None

    def _deliver_replay(
        self,
        run: str,
        queue: EventQueue,
        sub: _Sub,
        newest: int,
        closed: bool,
        entries: Sequence[Any],
    ) -> None:
        events, terminal, _ = self._decode(entries)
        terminal = terminal or closed
        wanted = sub.after
        items: list[Event]
        if wanted >= newest:
            items = [] if wanted == newest else [gap_marker(wanted, newest + 1)]
        elif events and events[0]["id"] > wanted + 1:
            items = [gap_marker(wanted, events[0]["id"]), *events]
        else:
            items = events
        with self._lock:
            subscribers = self._subscribers.get(run)
            if subscribers is None or subscribers.get(queue) is not sub:
                return  # it left meanwhile
            finished = True
            if len(items) > self._max_backlog:
                del items[self._max_backlog :]
                items.append(overflow_marker(self._max_backlog))
                self._overflowed += 1
            elif terminal:
                items.append(done_marker())
            else:
                finished = False
                sub.after = newest
                sub.ready = True
            if finished:
                del subscribers[queue]
                if not subscribers:
                    del self._subscribers[run]
            try:
                queue.put_batch(items)
            except Exception:
                subscribers.pop(queue, None)
                if not subscribers:
                    self._subscribers.pop(run, None)

    def _deliver_live(self, run: str, entries: Sequence[Any]) -> None:
        events, terminal, newest = self._decode(entries)
        position = self._positions.get(run, 0)
        first_id = events[0]["id"] if events else (newest or 0) + 1
        if terminal:
            self._positions.pop(run, None)
        elif events:
            self._positions[run] = events[-1]["id"]
        limit = self._max_backlog
        with self._lock:
            subscribers = self._subscribers.get(run)
            if subscribers is None:
                return
            for queue, sub in list(subscribers.items()):
                if not sub.ready:
                    continue  # its replay, read later, covers these
                items = events[bisect_right(events, sub.after, key=_event_id) :]
                if first_id > position + 1 and sub.after < first_id - 1:
                    # Trimmed while the reader was away: say so, mid-stream.
                    items = [gap_marker(sub.after, first_id), *items]
                room = limit - queue.qsize()
                if len(items) > room:
                    items = items[: max(room, 0)]
                    items.append(overflow_marker(limit))
                    del subscribers[queue]
                    self._overflowed += 1
                elif terminal:
                    items = [*items, done_marker()]
                    del subscribers[queue]
                if events:
                    sub.after = max(sub.after, events[-1]["id"])
                try:
                    queue.put_batch(items)
                except Exception:
                    subscribers.pop(queue, None)
            if not subscribers:
                del self._subscribers[run]

    async def flush(self) -> None:
        """Wait until everything Redis holds now for this process's subscribers (events,
        replays, ``done``) is in their queues. On the loop thread. For tests and benchmarks;
        it waits as long as Redis is unreachable."""
        self._ensure_reader()
        with self._lock:
            runs = list(self._subscribers)
        client = self._async or redis.asyncio.Redis.from_url(self.url, protocol=2)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for run in runs:
                    pipe.hmget(self._keys(run)[1], ["n", "c"])
                tails = {
                    run: (int(raw or 0), closed is not None)
                    for run, (raw, closed) in zip(runs, await pipe.execute(), strict=True)
                }
        finally:
            if client is not self._async:
                await client.aclose()

        def delivered() -> bool:
            with self._lock:
                for run, (tail, closed) in tails.items():
                    subs = self._subscribers.get(run)
                    if not subs:
                        continue
                    if closed or not all(sub.ready for sub in subs.values()):
                        return False
                    # Live subscribers that are ahead of the reader need nothing more.
                    if self._positions.get(run, -1) < tail and any(
                        sub.after < tail for sub in subs.values()
                    ):
                        return False
            return True

        while True:
            progress = self._progress
            assert progress is not None
            if delivered():
                return
            await progress.wait()

    async def aclose(self) -> None:
        """Stop the reader task and close every connection. On the loop thread."""
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            # redis-py can swallow a cancellation that lands while it takes or hands back a
            # connection; disconnecting the reader's pool then ends its read with an error,
            # and the reader returns because the broker is closed.
            while not reader.done():
                await asyncio.wait({reader}, timeout=0.1)
                if not reader.done():
                    client = self._async
                    if client is not None:
                        with contextlib.suppress(RedisError, OSError):
                            await client.connection_pool.disconnect()
                    reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        for task in list(self._background):
            task.cancel()
        if self._async is not None:
            await _close_quietly(self._async)
            self._async = None
        self._sync.close()


async def _close_quietly(client: redis.asyncio.Redis) -> None:
    with contextlib.suppress(RedisError, OSError):
        await client.aclose()
