"""Brokers whose locks come from where the constructor patch cannot see, for the reach tests.

Each is ``tests.discovery_targets.HolderBroker`` (one lock around everything) with its lock
taken from elsewhere:

* ``HelperLockBroker``: the import-time lock of ``tests.reach_helpers`` (a helper module);
* ``FromImportLockBroker``: a lock ``tests.reach_helpers`` makes by ``from threading import Lock``;
* ``DataclassLockBroker``: a ``field(default_factory=threading.Lock)`` of a helper's dataclass;
* ``DeepLockBroker``: the import-time lock of ``tests.reach_deep``, a module it never names
  (so only the broker's attribute can be replaced);
* ``TupleLockBroker``: that lock kept inside a tuple, where nothing can replace it;
* ``LazyRunStateBroker``: a per-run state made lazily, in ``emit``, by a dataclass of
  ``tests.reach_deep``, whose lock guards the run's events. The first producer to take it
  waits, holding it, until the other producer's emit has begun, and that emit needs it: a
  thread blocks on a real lock.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any

from tests import reach_helpers
from tests.discovery_targets import HolderBroker

Event = dict[str, Any]


class HelperLockBroker(HolderBroker):
    def __init__(self) -> None:
        super().__init__()
        self._lock = reach_helpers.LOCK


class FromImportLockBroker(HolderBroker):
    def __init__(self) -> None:
        super().__init__()
        self._lock = reach_helpers.make_lock()


class DataclassLockBroker(HolderBroker):
    def __init__(self) -> None:
        super().__init__()
        self._guard = reach_helpers.Guarded()
        self._lock = self._guard.lock


class DeepLockBroker(HolderBroker):
    def __init__(self) -> None:
        super().__init__()
        self._lock = reach_helpers.deep_lock()


class TupleLockBroker(HolderBroker):
    def __init__(self) -> None:
        super().__init__()
        self._guards = (reach_helpers.deep_lock(), "guards")
        self._lock = self._guards[0]


class LazyRunStateBroker(HolderBroker):
    def __init__(self) -> None:
        super().__init__()
        self._states: dict[Hashable, Any] = {}
        self._began = {0: threading.Event(), 1: threading.Event()}  # producer -> its emit began

    def emit(self, run_id: Hashable, event: Event) -> None:
        producer = event.get("p", 0)
        self._began[producer].set()
        with self._lock:
            state = self._states.setdefault(run_id, reach_helpers.new_run_state())
        with state.lock:
            self._began[1 - producer].wait()
            state.events += 1
        super().emit(run_id, event)
