"""Every primitive the code under test can reach: controlled, or named with the fix.

``stateful.primitives`` controls what the traced modules make and bind. Three kinds of real
lock slip past it: one bound at import time in a helper module that is not traced, one made by
a dataclass ``field(default_factory=threading.Lock)`` (the real constructor, captured at class
creation), and one made by a ``from threading import Lock`` in an untraced helper. Each would
block a managed thread invisibly, and the example would end in a ``[watchdog]``. So:

* ``helper_modules(modules)`` are the modules the modules under test use (bound in their
  globals, or defining a function, a class or an object bound there), outside the standard
  library, installed packages and the suite: ``primitives.controlled`` rebinds their globals
  and classes (import-time instances, ``from threading import Lock``, dataclass factories) as
  it does the traced modules', without tracing them;
* ``adopt(broker, replacements)``, right after the broker is built, walks what it holds
  (``stateful.objectgraph``) and replaces each real primitive found where it can be set (an
  attribute, a slot, a dict value, a list or set member, a closure cell) with its controlled
  stand-in, the same one ``controlled`` made for it if it did, and returns how to put each back;
* ``uncontrolled(broker, traced)`` names every real primitive still reachable (one in a tuple,
  behind a property, in a module nobody traced): where it is (``broker._state.lock``), what made
  it when that can be known (a module's global, a dataclass field, else the module of the object
  that holds it), and the option that fixes it (``--trace-module=NAME``). The harness fails the
  example with these before any schedule runs (``UncontrolledPrimitive``), and adds them to a
  watchdog failure (``blocked_hint``), held ones first, for those made later.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from stateful import objectgraph
from stateful.primitives import (
    _REAL_BOUNDED_SEMAPHORE,
    _REAL_CONDITION,
    _REAL_EVENT,
    _REAL_LOCK_TYPE,
    _REAL_RLOCK_TYPE,
    _REAL_SEMAPHORE,
    Replacements,
)

_REAL_TYPES = (
    _REAL_LOCK_TYPE,
    _REAL_RLOCK_TYPE,
    _REAL_CONDITION,
    _REAL_EVENT,
    _REAL_SEMAPHORE,
    _REAL_BOUNDED_SEMAPHORE,
)
_KIND = {
    _REAL_LOCK_TYPE: "threading.Lock",
    _REAL_RLOCK_TYPE: "threading.RLock",
    _REAL_CONDITION: "threading.Condition",
    _REAL_EVENT: "threading.Event",
    _REAL_SEMAPHORE: "threading.Semaphore",
    _REAL_BOUNDED_SEMAPHORE: "threading.BoundedSemaphore",
}
_INSTALLED = tuple(
    os.path.normcase(path)
    for path in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
)


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real ``threading`` primitive, which the scheduler cannot see."""
    return isinstance(value, _REAL_TYPES)


def _kind(value: Any) -> str:
    return next(name for cls, name in _KIND.items() if isinstance(value, cls))


def _user_module(name: str) -> bool:
    """Code of the project under test: not the standard library, the suite or an installed
    package."""
    top = name.partition(".")[0]
    module = sys.modules.get(name)
    path = os.path.normcase(getattr(module, "__file__", None) or "")
    return (
        top not in sys.stdlib_module_names
        and top != "stateful"
        and bool(path)
        and not path.startswith(_INSTALLED)
    )


def helper_modules(modules: Iterable[types.ModuleType]) -> tuple[types.ModuleType, ...]:
    """The project's modules that ``modules`` use and that are not among them."""
    modules = tuple(modules)
    found: dict[str, types.ModuleType] = {}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, types.ModuleType):
                name = value.__name__
            elif isinstance(value, (type, types.FunctionType)):
                name = value.__module__
            else:
                name = type(value).__module__
            helper = sys.modules.get(name)
            if helper is not None and helper not in modules and _user_module(name):
                found.setdefault(name, helper)
    return tuple(found.values())


def _follow(value: Any) -> bool:
    # The broker's objects, and a ``queue.Queue``, whose locks a helper may have made real.
    module = type(value).__module__
    return module == "queue" or _user_module(module)


def _place(edge: objectgraph.Edge, stand_in: Any) -> Callable[[], None] | None:
    """Put ``stand_in`` where ``edge`` leads and return how to put the real one back, or None
    where nothing can be set (a tuple, a property, a frozenset)."""
    parent, step, real = edge.parent, edge.step, edge.child
    if step.kind == "attr" and step.name in objectgraph.attributes(parent):
        object.__setattr__(parent, step.name, stand_in)
        return lambda: object.__setattr__(parent, step.name, real)
    if step.kind == "key" and isinstance(parent, dict):
        parent[step.name] = stand_in
        return lambda: parent.__setitem__(step.name, real)
    if step.kind == "member" and isinstance(parent, list):
        index = next(i for i, member in enumerate(parent) if member is real)
        parent[index] = stand_in
        return lambda: parent.__setitem__(index, real)
    if step.kind == "member" and isinstance(parent, set):
        parent.discard(real)
        parent.add(stand_in)

        def restore() -> None:
            parent.discard(stand_in)
            parent.add(real)

        return restore
    if step.kind == "cell" and isinstance(parent, types.FunctionType):
        cell = objectgraph.closure_cells(parent)[step.name]
        cell.cell_contents = stand_in
        return lambda: setattr(cell, "cell_contents", real)
    return None


def adopt(broker: Any, replacements: Replacements) -> list[Callable[[], None]]:
    """Replace the real primitives reachable from ``broker`` where they can be set; return the
    calls that put them back."""
    undo: list[Callable[[], None]] = []
    for edge in list(objectgraph.walk({"broker": broker}, _follow)):
        stand_in = replacements.of(edge.child) if is_real(edge.child) else None
        restore = _place(edge, stand_in) if stand_in is not None else None
        if restore is not None:
            undo.append(restore)
    return undo


@dataclass(frozen=True)
class RealPrimitive:
    """A real primitive the code under test can reach, as the failure names it."""

    path: str
    kind: str
    origin: str
    fix: str
    held: bool

    def __str__(self) -> str:
        state = ", held" if self.held else ""
        return f"{self.path}: a real {self.kind}{state}, {self.origin}; {self.fix}"


def uncontrolled(broker: Any, traced: Iterable[str]) -> list[RealPrimitive]:
    """Every real primitive reachable from ``broker``, held ones first; ``traced`` names the
    modules under test."""
    traced = frozenset(traced)
    found = []
    for edge in objectgraph.walk({"broker": broker}, _follow):
        if is_real(edge.child):
            module, origin = _origin(edge, traced)
            fix = (
                f"fix: --trace-module={module}"
                if module is not None
                else "fix: --trace-module= the module that makes it"
            )
            path = objectgraph.render(edge.root, (*edge.path, edge.step))
            found.append(RealPrimitive(path, _kind(edge.child), origin, fix, _held(edge.child)))
    return sorted(found, key=lambda real: not real.held)


def _held(value: Any) -> bool:
    locked = getattr(value, "locked", None)
    if callable(locked):
        return bool(locked())
    inner = getattr(value, "_lock", None)  # a Condition: its lock
    return inner is not None and _held(inner)


def _origin(edge: objectgraph.Edge, traced: frozenset[str]) -> tuple[str | None, str]:
    """The untraced module that made the primitive at ``edge``, when it can be known, and how
    it was made."""
    value = edge.child
    for name, loaded in list(sys.modules.items()):
        if name in traced or not _user_module(name):
            continue
        for attribute, member in list(vars(loaded).items()):
            if member is value:
                return name, f"module {name}'s global {attribute}, made when it was imported"
    parent, step = edge.parent, edge.step
    fields = getattr(type(parent), "__dataclass_fields__", {})
    if step.kind == "attr" and step.name in fields:
        factory = fields[step.name].default_factory
        made_by = getattr(factory, "__qualname__", repr(factory))
        cls = type(parent)
        return cls.__module__, (
            f"made by the dataclass field {cls.__qualname__}.{step.name} "
            f"(default_factory={made_by}) of module {cls.__module__}"
        )
    module = type(parent).__module__
    if _user_module(module) and module not in traced:
        return module, f"held by an object of module {module}, which is not traced"
    return None, (
        "made by code that is not traced on the broker's behalf (a helper that bound the real "
        "constructor, say with from threading import Lock)"
    )


def describe_all(reals: Iterable[RealPrimitive]) -> str:
    """One line per primitive, indented, for a failure message."""
    return "\n".join(f"  {real}" for real in reals)
