"""Small brokers for the bounded-state check's own tests (``tests/test_boundedstate.py``).

Each is the zoo's ``GlobalLockBroker`` (correct for runs served one call at a time) keeping what
it remembers of closed runs in another place or shape: a number of runs fixed in the code, a
time window on a clock it is given, a module-level list, a log of tuples.
``RaisingCloseBroker`` fails at its first ``close``.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Hashable

from tests.mutants.correct_global_lock import GlobalLockBroker

#: How many closed runs ``FixedRetentionBroker`` remembers: a constant, not a parameter.
FIXED_RETENTION = 50

#: Every run ``GlobalLeakBroker`` ever closed.
SERVED_RUNS: list[Hashable] = []


class FixedRetentionBroker(GlobalLockBroker):
    """Remembers the last ``FIXED_RETENTION`` closed runs; its constructor takes nothing."""

    def __init__(self) -> None:
        super().__init__(max_closed_runs=FIXED_RETENTION)


class TimedRetentionBroker(GlobalLockBroker):
    """Remembers the runs closed within the last ``retain_closed_seconds`` of ``clock``."""

    def __init__(self, *, retain_closed_seconds: float, clock: Callable[[], float]) -> None:
        super().__init__()
        self._retain_seconds = retain_closed_seconds
        self._clock = clock
        self._closed_at: OrderedDict[Hashable, float] = OrderedDict()

    def close(self, run_id: Hashable) -> None:
        now = self._clock()
        with self._lock:
            while self._closed_at and now - next(iter(self._closed_at.values())) > (
                self._retain_seconds
            ):
                expired, _ = self._closed_at.popitem(last=False)
                del self._closed[expired]
            self._closed_at.setdefault(run_id, now)
        super().close(run_id)


class GlobalLeakBroker(FixedRetentionBroker):
    """Also records every closed run in the module-level ``SERVED_RUNS``."""

    def close(self, run_id: Hashable) -> None:
        SERVED_RUNS.append(run_id)
        super().close(run_id)


class TupleLogBroker(FixedRetentionBroker):
    """Also logs every close as a ``(run id, number)`` tuple in a deque without a bound."""

    def __init__(self) -> None:
        super().__init__()
        self._log: deque[tuple[Hashable, int]] = deque()

    def close(self, run_id: Hashable) -> None:
        self._log.append((run_id, len(self._log)))
        super().close(run_id)


class RaisingCloseBroker(FixedRetentionBroker):
    """Its ``close`` raises."""

    def close(self, run_id: Hashable) -> None:
        raise RuntimeError(f"cannot close {run_id!r}")
