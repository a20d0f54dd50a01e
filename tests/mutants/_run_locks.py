"""The locking half of ``correct_split_modules``: per-run locks and the record of closed runs.

``RunLocks`` hands out one ``RLock`` per run, created on first use while holding its registry
lock (so every caller gets the same lock for a run), and keeps the bounded record of closed runs
under the same registry lock. Lock order for callers: a run lock, then (inside these methods)
the registry, never the reverse.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class RunLocks:
    """Per-run RLocks made on first use, and which runs are closed."""

    def __init__(self, max_closed_runs: int) -> None:
        if max_closed_runs < 1:
            raise ValueError("max_closed_runs must be >= 1")
        self._registry = threading.Lock()  # guards _locks and _closed
        self._locks: dict[Hashable, Any] = {}  # run id -> RLock
        self._closed: OrderedDict[Hashable, None] = OrderedDict()
        self._max_closed_runs = max_closed_runs

    def for_run(self, run_id: Hashable) -> Any:
        """The run's lock; the same object for every caller until the run is forgotten."""
        with self._registry:
            lock = self._locks.get(run_id)
            if lock is None:
                lock = self._locks[run_id] = threading.RLock()
            return lock

    def is_closed(self, run_id: Hashable) -> bool:
        with self._registry:
            return run_id in self._closed

    def mark_closed(self, run_id: Hashable) -> bool:
        """Record the run as closed; False if it already was. Forgets the oldest closed runs."""
        with self._registry:
            if run_id in self._closed:
                return False
            self._closed[run_id] = None
            while len(self._closed) > self._max_closed_runs:
                old, _ = self._closed.popitem(last=False)
                self._locks.pop(old, None)
            return True
