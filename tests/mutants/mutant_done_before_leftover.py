"""A closed run's subscriber gets done with the part of its events that fit, before the rest.
Caught by: no-lost-events
Also caught by: no-hang-after-done
Trace modules: broker.core

"done goes with the last flush after close": the flush appends ``done`` for every subscriber
of a closed run, also for one that was handed only what fit in its queue and is still owed
events. It leaves with done and never gets them.
"""

from __future__ import annotations

from bisect import bisect_right

from broker.core import _MIN_CHUNK, RunBroker, _event_id, _Run
from broker.eventqueue import EventQueue
from broker.events import Event, done_marker, overflow_marker


class DoneBeforeLeftoverBroker(RunBroker):
    """``broker.RunBroker`` with the defect above in ``_fan_out_locked``."""

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
                        if run.closed:
                            items = [*items, done_marker()]
                            del subscribers[queue]
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
