"""The shapes of the items a subscriber receives, and the constructors for the markers.

Every item is a plain ``dict``:

* a regular event is the emitted dict plus an ``"id"`` key (an ``int``, per run, 1, 2, 3, ...);
* a marker has a ``"type"`` key and never an ``"id"`` key:

  - ``{"type": "done"}``: the run is closed; the last item a subscriber gets;
  - ``{"type": "overflow", "limit": L}``: the subscriber fell ``L`` items behind and was cut off;
    the last item it gets, instead of ``done``;
  - ``{"type": "gap", "last_event_id": N, "first_available_id": M}``: the events after ``N`` and
    before ``M`` are no longer buffered; comes first, before the buffered events from ``M`` on.

Because only markers lack an ``"id"``, an emitted event whose own ``"type"`` is ``"done"`` is still
a regular event: :func:`is_terminal` tells the two apart, comparing on ``"type"`` alone does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

Event: TypeAlias = dict[str, Any]
"""One item of a subscriber queue: a regular event (with ``"id"``) or a marker (without)."""

TERMINAL_TYPES = frozenset({"done", "overflow"})


def done_marker() -> Event:
    """A fresh ``{"type": "done"}``."""
    return {"type": "done"}


def overflow_marker(limit: int) -> Event:
    """The terminal marker of a subscriber cut off for having ``limit`` undelivered items."""
    return {"type": "overflow", "limit": limit}


def gap_marker(last_event_id: int, first_available_id: int) -> Event:
    """The marker that tells a reconnecting client that events were lost and it must resync."""
    return {"type": "gap", "last_event_id": last_event_id, "first_available_id": first_available_id}


def is_terminal(item: Mapping[str, Any]) -> bool:
    """True for the ``done`` and ``overflow`` markers: nothing is delivered after one of them."""
    return "id" not in item and item.get("type") in TERMINAL_TYPES
