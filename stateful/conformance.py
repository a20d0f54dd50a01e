"""What a broker promises beyond the seed contract: the conformance profile it is judged by.

Real brokers send items besides events and markers, or give every new subscriber the run's
history, and are correct by their own contract. A ``Conformance`` declares that contract:

``items``
    ``module:function``, a predicate ``is_noise(item) -> bool``. An item the broker delivers
    that is neither an event the suite emitted nor a marker (``done``, ``overflow``, ``gap``),
    and for which the predicate is true, is noise: a greeting, a keep-alive. Noise is recorded
    and shown in reports, but not checked as an event. It may come at any point before the
    terminal item and never after it: ``nothing-after-done`` (and ``overflow-marker``) hold for
    noise as for any other item. The predicate is never asked about events and markers, so the
    terminal item is the marker itself (``{"type": "done"}``), never a wrapped form of it: a
    broker that sends only a wrapped ``done`` leaves its subscribers hanging
    (``no-hang-after-done``).
``history``
    ``none`` (the default): the seed contract. ``all``: a subscriber without ``last_event_id``
    first gets every event of the run emitted before it subscribed, in emit order, then the live
    ones. No-lost-events then counts from the run's first event, not from ``subscribe``; a
    subscriber that arrives after ``close`` gets the run's events, then ``done``; order and
    no-duplicates hold as ever, and a subscriber with ``last_event_id`` is judged by the replay
    contract.

A profile is declared by ``--broker-items`` and ``--broker-history`` (``stateful.plugin``; the
same options of ``python -m stateful.killmatrix``), by a registry entry's ``conformance``, or in
code, by ``machine_for(spec, conformance=...)`` or a ``RunBrokerMachine`` subclass's
``conformance``. ``options()`` turns one back into the command-line options that declare it.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HISTORY_CHOICES = ("none", "all")

NoisePredicate = Callable[[Any], bool]


@dataclass(frozen=True)
class Conformance:
    """A broker's declared contract; the default is the seed contract alone."""

    #: ``module:function``: the predicate that says which extra items the broker may send.
    items: str | None = None
    #: ``all`` when a new subscriber first gets the run's history; ``none`` otherwise.
    history: str = "none"

    def __post_init__(self) -> None:
        if self.history not in HISTORY_CHOICES:
            raise ValueError(
                f"history {self.history!r} is not one of: {', '.join(HISTORY_CHOICES)}"
            )

    @property
    def replays_history(self) -> bool:
        return self.history == "all"

    def noise_predicate(self) -> NoisePredicate | None:
        """The ``items`` predicate, loaded; raises ``ImportError`` or ``ValueError`` (naming
        the spec) when it cannot be loaded."""
        return None if self.items is None else load_predicate(self.items)

    def options(self) -> list[str]:
        """The command-line options that declare this profile (none for the default)."""
        declared = [] if self.items is None else [f"--broker-items={self.items}"]
        if self.history != HISTORY_CHOICES[0]:
            declared.append(f"--broker-history={self.history}")
        return declared

    def __str__(self) -> str:
        return f"items {self.items or 'events and markers only'}, history {self.history}"


@functools.cache
def load_predicate(spec: str) -> NoisePredicate:
    """Import ``module:function`` and check that it is callable."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"{spec!r} is not of the form 'module:function'")
    module = importlib.import_module(module_name)
    try:
        predicate = getattr(module, name)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {name!r}") from None
    if not callable(predicate):
        raise ValueError(f"{spec!r} is not callable: it is a {type(predicate).__name__}")
    checked: NoisePredicate = predicate
    return checked
