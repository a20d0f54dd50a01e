"""The flush keeps a run dirty for a reader still owed events, but does not schedule itself again.
Caught by: no-lost-events
Also caught by: no-hang-after-done
Trace modules: broker.core

A flush hands a subscriber only what fits in its queue and keeps the rest; here it forgets
to re-arm itself with ``call_soon``. The run stays dirty, so no emit wakes the loop either: the
reader waits for events (and ``done``) that only another run's wake-up or a ``close`` would
bring, one chunk at a time.
"""

from __future__ import annotations

from broker.core import RunBroker


class FlushNotRearmedBroker(RunBroker):
    """``broker.RunBroker`` with the defect above in ``_flush``."""

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
            if len(self._closed) > self._retain_runs:
                self._evict_locked(self._clock())
