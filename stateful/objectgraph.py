"""The suite's one walk over the objects a broker holds.

Three checks look inside a broker without knowing how it is written: the bounded-state check
searches it for the ids of runs it served (``stateful.boundedstate``), the cleanup check finds
the maps it keeps its subscribers in (``stateful.introspect``), and the scheduler finds the real
locks it holds (``stateful.reach``). They walk the same graph, here.

``walk(roots, follow)`` visits every object reachable from ``roots``, breadth first, each object
once, at its shortest path, and yields each ``Edge`` (the parent, its path, the step, the
child). It goes into:

* dicts (keys and values, so dicts of dicts too), lists, tuples, sets, frozensets, deques and
  ``WeakSet`` members;
* bound methods (their ``__self__``), functions (the cells of their closures) and
  ``functools.partial`` objects (their function, arguments and keywords);
* the instance attributes of the objects ``follow`` accepts: ``__dict__``, every ``__slots__``
  of their class, and every ``property`` of their class, read on the instance (a getter that
  raises is skipped).

Nothing else is entered: not modules, classes, the event loop, locks or queues, unless
``follow`` accepts them. The walk stops ``max_depth`` steps from a root and after ``max_nodes``
objects, so a graph that leads far from the broker's own state costs a bounded amount.

A path is a tuple of steps; ``render`` spells it as the code that reads it
(``broker._runs['r1'].queue``) and ``resolve`` reads it again later, through the same
attributes, keys and properties. A step into a set member cannot be read again, and renders as
``[…]``, as does a step into a sequence, whose indexes shift.
"""

from __future__ import annotations

import functools
import types
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple
from weakref import WeakSet

#: The containers whose members are walked.
COLLECTIONS = (set, frozenset, list, tuple, deque, WeakSet)
MAX_DEPTH = 8
MAX_NODES = 200_000
_MISSING = object()


@dataclass(frozen=True)
class Step:
    """One step from an object to a child: ``kind`` is ``attr`` (also a slot, a property or a
    bound method's ``__self__``), ``key`` (a dict value), ``keyof`` (a dict key), ``member``
    (of a collection), ``cell`` (a closure variable) or ``arg`` (of a partial)."""

    kind: str
    name: Any = None

    def render(self) -> str:
        if self.kind == "attr":
            return f".{self.name}"
        if self.kind == "key":
            return f"[{_short(self.name)}]"
        if self.kind == "cell":
            return f".<{self.name}>"
        if self.kind == "arg":
            return f"<{self.name}>"
        return "" if self.kind == "keyof" else "[…]"


Path = tuple[Step, ...]


class Edge(NamedTuple):
    """One step of the walk: from ``parent``, reached from root ``root`` by ``path``, by
    ``step`` to ``child``."""

    root: str
    path: Path
    parent: Any
    step: Step
    child: Any


def _short(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 30 else text[:27] + "..."


def render(root: str, path: Path) -> str:
    """``path`` from the root named ``root``, spelt as the code that reads it."""
    return root + "".join(step.render() for step in path)


def attributes(obj: Any) -> dict[str, Any]:
    """``obj``'s instance attributes, from its ``__dict__`` and every ``__slots__`` of its class."""
    found = dict(getattr(obj, "__dict__", None) or {})
    for cls in type(obj).__mro__:
        slots = getattr(cls, "__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot not in found and slot not in ("__dict__", "__weakref__"):
                value = getattr(obj, slot, _MISSING)
                if value is not _MISSING:
                    found[slot] = value
    return found


def properties(obj: Any) -> dict[str, Any]:
    """What each ``property`` of ``obj``'s class reads on it; a getter that raises is left out."""
    found: dict[str, Any] = {}
    for cls in type(obj).__mro__:
        for name, member in vars(cls).items():
            if isinstance(member, property) and name not in found and member.fget is not None:
                try:
                    found[name] = member.fget(obj)
                except Exception:  # a getter that fails shows nothing to walk
                    continue
    return found


def children(value: Any, follow: Callable[[Any], bool]) -> Iterator[tuple[Step, Any]]:
    """The steps from ``value`` to each object it holds, as the module docstring lists them."""
    if isinstance(value, dict):
        for key, member in list(value.items()):
            yield Step("keyof"), key
            yield Step("key", key), member
    elif isinstance(value, COLLECTIONS):
        for member in list(value):
            yield Step("member"), member
    elif isinstance(value, types.MethodType):
        yield Step("attr", "__self__"), value.__self__
    elif isinstance(value, types.FunctionType):
        for name, cell in closure_cells(value).items():
            contents = _cell_contents(cell)
            if contents is not _MISSING:
                yield Step("cell", name), contents
    elif isinstance(value, functools.partial):
        yield Step("arg", "func"), value.func
        for index, arg in enumerate(value.args):
            yield Step("arg", index), arg
        for name, arg in value.keywords.items():
            yield Step("arg", name), arg
    elif follow(value):
        for name, member in attributes(value).items():
            yield Step("attr", name), member
        for name, member in properties(value).items():
            yield Step("attr", name), member


def closure_cells(function: types.FunctionType) -> dict[str, types.CellType]:
    """The cells of ``function``'s closure, by the name of the variable each holds."""
    return dict(zip(function.__code__.co_freevars, function.__closure__ or (), strict=True))


def _cell_contents(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # a closure variable not yet bound
        return _MISSING


def expandable(value: Any, follow: Callable[[Any], bool]) -> bool:
    """Whether ``children`` goes into ``value``."""
    return isinstance(
        value, (dict, *COLLECTIONS, types.MethodType, types.FunctionType, functools.partial)
    ) or (not isinstance(value, (type, types.ModuleType, str, bytes)) and follow(value))


def walk(
    roots: dict[str, Any],
    follow: Callable[[Any], bool],
    *,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
) -> Iterator[Edge]:
    """Every ``Edge`` of the objects reachable from ``roots``, breadth first, each object
    entered once; see the module docstring."""
    seen: set[int] = set()
    pending: deque[tuple[str, Path, Any]] = deque(
        (name, (), value) for name, value in roots.items()
    )
    visited = 0
    while pending and visited < max_nodes:
        root, path, value = pending.popleft()
        if id(value) in seen or len(path) > max_depth:
            continue
        seen.add(id(value))
        visited += 1
        for step, child in children(value, follow):
            yield Edge(root, path, value, step, child)
            if id(child) not in seen and expandable(child, follow):
                pending.append((root, (*path, step), child))


def resolve(obj: Any, path: Path) -> Any:
    """Read ``path`` from ``obj`` again; ``None`` where a step no longer leads anywhere."""
    for step in path:
        if step.kind == "attr":
            try:
                obj = getattr(obj, step.name, None)
            except Exception:  # a property whose getter fails now
                return None
        elif step.kind == "key" and isinstance(obj, dict):
            obj = obj.get(step.name)
        else:
            return None
    return obj
