"""Finding a broker's subscriber map without knowing how it is written.

``n_subscribers`` cannot see an *empty* subscriber set left behind for a run, yet that is the
leak the contract forbids. So while a run has live subscribers, ``SubscriberMaps.learn`` walks
the broker (``stateful.objectgraph``: its attributes, slots and properties, those of the objects
of code outside the standard library, and the containers and callables inside them) for dicts
keyed by run id whose value for that run is a collection of per-subscriber entries, one of which
carries a live subscriber's queue. An entry carries a queue when it is the queue, or when the
queue is one of its parts, or a part of one of its parts: a ``(loop, queue)`` tuple, a holder
object with the queue as an attribute (or a property), a bound method ``queue.put_nowait``
stored as the callback, a ``functools.partial`` or a closure over either. Such dicts are
subscriber maps, at any depth (``broker._state.subscribers``, a map of maps). Once a run's
subscribers have all left, ``leftovers`` reports any learned map that still has an entry for it.

A dict whose value is a per-run *state* object, or a per-run dict or set that merely contains a
subscriber collection among other things, is not a subscriber map (a broker may keep an open
run's state, such as its replay buffer): an entry that is itself a collection carries nothing.

When live subscribers were looked for and no map was found, ``found_none`` says so: the cleanup
check then rests on ``n_subscribers`` alone, and the report says that once (``no_map_note``).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterable
from typing import Any

from stateful import objectgraph
from stateful.objectgraph import COLLECTIONS, Path

#: How far from the broker a map is looked for, and how far into an entry its queue is.
MAP_DEPTH = 4
ENTRY_DEPTH = 2
_RESOLVABLE = ("attr", "key")


def no_map_note(spec: str) -> str:
    """The report's line for a broker in which no subscriber map was found."""
    return f"no subscriber map found in {spec}; the cleanup check rests on n_subscribers only"


def _carries(entry: Any, queue_ids: set[int], follow: Callable[[Any], bool], depth: int) -> bool:
    if id(entry) in queue_ids:
        return True
    # A collection inside an entry is a set of subscribers, not one subscriber's record.
    if depth == 0 or (isinstance(entry, (dict, *COLLECTIONS)) and not isinstance(entry, tuple)):
        return False
    if not objectgraph.expandable(entry, follow):
        return False
    return any(
        _carries(part, queue_ids, follow, depth - 1)
        for _, part in objectgraph.children(entry, follow)
    )


def _holds(value: Any, queue_ids: set[int], follow: Callable[[Any], bool]) -> bool:
    """Whether ``value`` is a collection with an entry that carries one of the queues."""
    if not isinstance(value, (dict, *COLLECTIONS)):
        return False
    return any(
        _carries(entry, queue_ids, follow, ENTRY_DEPTH)
        for _, entry in objectgraph.children(value, follow)
    )


class SubscriberMaps:
    """The subscriber maps learned so far for one broker instance."""

    def __init__(self, own_modules: Iterable[str]) -> None:
        self._follow = _not_stdlib(frozenset(own_modules))
        self.paths: set[Path] = set()
        # Queues already looked for (kept alive, so that their ids stay theirs): a map is
        # looked for again only when a new subscriber's queue appears.
        self._looked_for: dict[int, Any] = {}

    @property
    def found_none(self) -> bool:
        """Live subscribers were looked for, and no map holding them was found."""
        return bool(self._looked_for) and not self.paths

    def learn(self, broker: Any, live_queues: dict[str, list[Any]]) -> None:
        """``live_queues`` maps each run to the queues of its live subscribers."""
        new = {
            run: {id(q) for q in queues if id(q) not in self._looked_for}
            for run, queues in live_queues.items()
        }
        if not any(new.values()):
            return
        for queues in live_queues.values():
            self._looked_for.update((id(q), q) for q in queues)
        walked = objectgraph.walk({"broker": broker}, self._follow, max_depth=MAP_DEPTH)
        for edge in walked:
            child, full = edge.child, (*edge.path, edge.step)
            if not isinstance(child, dict) or any(s.kind not in _RESOLVABLE for s in full):
                continue
            for run, queue_ids in new.items():
                if (
                    queue_ids
                    and _has_key(child, run)
                    and _holds(child[run], queue_ids, self._follow)
                ):
                    self.paths.add(full)

    def leftovers(self, broker: Any, run: str) -> list[str]:
        found = []
        for path in sorted(self.paths, key=lambda p: objectgraph.render("broker", p)):
            mapping = objectgraph.resolve(broker, path)
            if isinstance(mapping, dict) and _has_key(mapping, run):
                found.append(f"{objectgraph.render('broker', path)}[{run!r}] = {mapping[run]!r}")
        return found


class Discoveries:
    """Across a session, which brokers had live subscribers looked for and never a map found:
    the plugin names each once at the end of the run."""

    def __init__(self) -> None:
        self._found: set[str] = set()
        self._looked: set[str] = set()

    def record(self, spec: str, maps: SubscriberMaps) -> None:
        if maps.paths:
            self._found.add(spec)
        elif maps.found_none:
            self._looked.add(spec)

    def unmapped(self) -> list[str]:
        return sorted(self._looked - self._found)


DISCOVERIES = Discoveries()


def _not_stdlib(own: frozenset[str]) -> Callable[[Any], bool]:
    """Objects whose attributes are walked: the broker's own, a ``SimpleNamespace``, and any
    object of code outside the standard library (a helper package's holder); not the loop, the
    queues or other standard objects, nor the suite's own (its loop, its locks), whose insides
    are no broker's map."""

    def follow(value: Any) -> bool:
        module = type(value).__module__
        top = module.partition(".")[0]
        return (
            module in own
            or isinstance(value, types.SimpleNamespace)
            or (top not in sys.stdlib_module_names and top != "stateful")
        )

    return follow


def _has_key(mapping: dict[Any, Any], run: str) -> bool:
    try:
        return run in mapping
    except TypeError:  # a dict whose keys do not compare with a str
        return False
