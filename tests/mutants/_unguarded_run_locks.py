"""The locking half of ``mutant_split_modules_lock_race``: per-run locks made without the registry.

A copy of ``_run_locks`` whose ``for_run`` looks the run's lock up and creates it without
holding the registry lock ("a dict get and a dict set are each atomic"), so two threads that ask
for a fresh run's lock at the same moment can each get a lock of their own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class UnguardedRunLocks:
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
