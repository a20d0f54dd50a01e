"""Correct: per-run locks kept by a helper class in a second module; this module has no primitive.
Trace modules: tests.mutants._run_locks

The design of ``correct_per_run_locks`` split in two: ``tests.mutants._run_locks.RunLocks`` makes
one ``RLock`` per run (under its registry lock) and records the closed runs; this module holds
the subscriber map and the loop, and never names ``threading``. Every ``call_soon_threadsafe`` for
a run is made while holding that run's lock, so the loop runs them in the run's linearization
order. ``close`` schedules, per subscriber, ``_finish`` on the loop, which removes that
subscriber from the map and puts done in the same callback: events emitted before close precede
done, emits after close are dropped, a second close is a no-op, a subscriber arriving after close
gets done at once without being registered, and the map entry disappears with the last done (or
the last unsubscribe).

A suite that controls only the module defining the class sees this module's lines but not the
helper's, and the helper's locks are real ones: run it with
``--trace-module=tests.mutants._run_locks``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable
from typing import Any

from tests.mutants._run_locks import RunLocks

Event = dict[str, Any]
Queue = asyncio.Queue[Event]


class SplitModulesBroker:
    """Per-run locks from a helper module; done delivered and the subscriber dropped on the loop."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        self._locks = RunLocks(max_closed_runs)
        # run id -> queues (dict as an ordered set); key r is guarded by r's lock.
        self._subscribers: dict[Hashable, dict[Queue, None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop  # one reference assignment: atomic

    def subscribe(self, run_id: Hashable) -> Queue:
        queue: Queue = asyncio.Queue()
        with self._locks.for_run(run_id):
            if self._locks.is_closed(run_id):
                queue.put_nowait({"type": "done"})
                return queue
            self._subscribers.setdefault(run_id, {})[queue] = None
        return queue

    def unsubscribe(self, run_id: Hashable, queue: Queue) -> None:
        with self._locks.for_run(run_id):
            self._forget(run_id, queue)

    def emit(self, run_id: Hashable, event: Event) -> None:
        if not isinstance(event, dict):
            raise TypeError(f"event must be a dict, not {type(event).__name__}")
        with self._locks.for_run(run_id):
            if self._locks.is_closed(run_id):
                return
            for queue in self._subscribers.get(run_id, {}):
                self._post(queue.put_nowait, event)

    def close(self, run_id: Hashable) -> None:
        with self._locks.for_run(run_id):
            if not self._locks.mark_closed(run_id):
                return
            for queue in self._subscribers.get(run_id, {}):
                self._post(self._finisher(run_id), queue)

    def n_subscribers(self, run_id: Hashable) -> int:
        with self._locks.for_run(run_id):
            return len(self._subscribers.get(run_id, ()))

    def is_done(self, run_id: Hashable) -> bool:
        return self._locks.is_closed(run_id)

    def _forget(self, run_id: Hashable, queue: Queue) -> None:
        """Drop ``queue`` from the run's subscribers; call with the run's lock held."""
        subs = self._subscribers.get(run_id)
        if subs is None or queue not in subs:
            return
        del subs[queue]
        if not subs:
            del self._subscribers[run_id]

    def _finisher(self, run_id: Hashable) -> Callable[[Queue], None]:
        def finish(queue: Queue) -> None:  # runs on the loop
            with self._locks.for_run(run_id):
                self._forget(run_id, queue)
                queue.put_nowait({"type": "done"})

        return finish

    def _post(self, callback: Callable[[Any], None], arg: Any) -> None:
        """Schedule ``callback(arg)`` on the loop; call with the run's lock held."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads the queues any more
            loop.call_soon_threadsafe(callback, arg)
