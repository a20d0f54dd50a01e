"""Regression: events that arrived out of id order were reported as lost.

Found by the kill matrix in ``tests.mutants.mutant_push_outside_lock:PushOutsideLockBroker``,
whose emits push after releasing the lock: a subscriber got ids 4, 6, 7, 5. The safety check
walked the ids, saw 6 right after 4 and named the hole ``no-lost-events``, though id 5 came
later: nothing was lost, the events were out of order. A hole filled later in the same stream
is now an ``order`` violation; a hole never filled is still a loss.
"""

from typing import Any

import pytest

from stateful.errors import InvariantViolation
from stateful.history import History
from stateful.invariants import check_safety


def subscriber_got(*ids: int) -> History:
    """A history in which P0 emitted three events to r1 (ids 1, 2, 3 by emit order) while
    subscriber s1 was subscribed, and s1 got the events with these ids, in this order."""
    history = History()
    sub = history.new_subscriber("r1")
    sub.began, sub.subscribed = 1, 2
    items: dict[int, Any] = {}
    for event_id in (1, 2, 3):
        record = history.new_emit(0, "r1")
        record.began, record.returned = 2 * event_id + 1, 2 * event_id + 2
        items[event_id] = {"type": "event", "p": 0, "n": record.key[1], "id": event_id}
    sub.received = [(10 + position, items[i]) for position, i in enumerate(ids)]
    return history


def test_a_hole_filled_later_is_disorder() -> None:
    # P0#2 after P0#3 breaks the producer's order too, but the hole at id 3 comes first.
    with pytest.raises(InvariantViolation, match=r"^\[order\] s1 got id 3 right after id 1, and"):
        check_safety(subscriber_got(1, 3, 2))


def test_a_hole_never_filled_is_a_loss() -> None:
    with pytest.raises(InvariantViolation, match=r"^\[no-lost-events\] s1 got id 3 right after"):
        check_safety(subscriber_got(1, 3))
