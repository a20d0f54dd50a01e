"""A broker split over two modules whose helper makes per-run locks without its registry lock.
Caught by: no-hang-after-done
Also caught by: nothing-after-done, done-exactly-once-last, no-exception
Trace modules: tests.mutants._unguarded_run_locks

``correct_split_modules`` with its helper swapped for ``tests.mutants._unguarded_run_locks``,
whose ``for_run`` creates a fresh run's lock unguarded: two threads that both find no lock make
two, and their critical sections on that run stop excluding each other. The defect is the one of
``mutant_run_lock_created_twice``, but its lines live in a second module, which a suite traces
only when told to (``--trace-module=tests.mutants._unguarded_run_locks``).

Minimal interleaving (three preemptions, on a run nobody has touched yet, with the helper
traced): subscribe(r) on the loop finds no lock and is preempted; close(r) on a producer finds no
lock and is preempted; subscribe stores and takes its lock, finds r open, and is preempted before
registering; close stores and takes its own lock, marks r closed, finds no subscriber; subscribe
registers. The subscriber never gets done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable
from typing import Any

from tests.mutants._unguarded_run_locks import UnguardedRunLocks

Event = dict[str, Any]
Queue = asyncio.Queue[Event]


class SplitModulesLockRaceBroker:
    """Per-run locks from a helper module; done delivered and the subscriber dropped on the loop."""

    def __init__(self, *, max_closed_runs: int = 10_000) -> None:
        self._locks = UnguardedRunLocks(max_closed_runs)
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
