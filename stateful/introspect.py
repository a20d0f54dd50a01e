"""Finding a broker's subscriber map without knowing how it is written.

``n_subscribers`` cannot see an *empty* subscriber set left behind for a run, yet that is the
leak the contract forbids. So while a run has live subscribers, ``SubscriberMaps.learn`` looks
through the broker's attributes (and those of its own helper objects, one level down) for dicts
keyed by run id whose value for that run holds one of the live subscribers' queues, directly or
inside a small wrapper object. Those dicts are subscriber maps. Once a run's subscribers have
all left, ``leftovers`` reports any learned map that still has an entry for it.

A dict whose value is a per-run *state* object that merely contains a subscriber collection is
not a subscriber map (a broker may keep an open run's state, such as its replay buffer), so
only maps whose values hold the queues themselves are learned.
"""

from __future__ import annotations

import types
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any
from weakref import WeakSet

_COLLECTIONS = (set, frozenset, list, tuple, deque, WeakSet)
Path = tuple[str, ...]


def _members(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    if isinstance(value, _COLLECTIONS):
        return list(value)
    return ()


def _holds(value: Any, queue_ids: set[int]) -> bool:
    for member in _members(value):
        if id(member) in queue_ids:
            return True
        fields = getattr(member, "__dict__", None)
        if isinstance(fields, dict) and any(id(v) in queue_ids for v in fields.values()):
            return True
    return False


def attributes(obj: Any) -> dict[str, Any]:
    """``obj``'s instance attributes, from its ``__dict__`` and every ``__slots__`` of its class."""
    found = dict(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if slot not in found and hasattr(obj, slot):
                found[slot] = getattr(obj, slot)
    return found


def _dicts(
    obj: Any, own_modules: frozenset[str], depth: int, path: Path = ()
) -> Iterator[tuple[Path, dict[Any, Any]]]:
    for name, value in attributes(obj).items():
        if isinstance(value, dict):
            yield (*path, name), value
        elif (
            depth > 0
            and not isinstance(value, (type, types.ModuleType))
            and type(value).__module__ in own_modules
        ):
            yield from _dicts(value, own_modules, depth - 1, (*path, name))


def _resolve(obj: Any, path: Path) -> Any:
    for name in path:
        obj = attributes(obj).get(name)
    return obj


class SubscriberMaps:
    """The subscriber maps learned so far for one broker instance."""

    def __init__(self, own_modules: Iterable[str]) -> None:
        self._own = frozenset(own_modules)
        self.paths: set[Path] = set()

    def learn(self, broker: Any, live_queues: dict[str, list[Any]]) -> None:
        """``live_queues`` maps each run to the queues of its live subscribers."""
        for path, mapping in _dicts(broker, self._own, depth=1):
            for run, queues in live_queues.items():
                if queues and run in mapping and _holds(mapping[run], {id(q) for q in queues}):
                    self.paths.add(path)

    def leftovers(self, broker: Any, run: str) -> list[str]:
        found = []
        for path in sorted(self.paths):
            mapping = _resolve(broker, path)
            if isinstance(mapping, dict) and run in mapping:
                found.append(f"{'.'.join(path)}[{run!r}] = {mapping[run]!r}")
        return found
