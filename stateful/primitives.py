"""Cooperative stand-ins for ``threading``'s primitives, and the patching that installs them.

The code under test is not changed. For the duration of an example, ``controlled(modules)``
rebinds, in each module under test:

* the ``threading`` and ``_thread`` modules (bound under any name) to proxies whose ``Lock``,
  ``RLock``, ``Condition``, ``Event``, ``Semaphore``, ``BoundedSemaphore`` and ``allocate_lock``
  build controlled primitives, everything else passing through to the real module;
* names bound by ``from threading import Lock, ...``, ``from queue import SimpleQueue`` and
  ``from time import sleep, monotonic, ...`` to the controlled versions;
* primitive *instances* created at import time, at module level or as class attributes, to
  fresh controlled ones;
* the ``default_factory`` of a dataclass field that is a real primitive constructor (captured
  when the class was made, so the constructor patch below never sees it) to the controlled one;

and, in the real ``threading``, ``_thread`` and ``queue`` modules, replaces the primitive
constructors (``queue.SimpleQueue`` among them, a C type that would block invisibly) with
factories that build a controlled primitive whenever a frame of a module under test is on the
calling stack (and the caller is not ``threading`` itself), and a real one otherwise. So a lock is
controlled however the code under test reaches ``threading``: an ``import threading`` inside a
function, a helper object in another module built by the broker, a ``queue.Queue``,
``LifoQueue`` or ``PriorityQueue`` (built on ``threading.Condition``), a ``ThreadPoolExecutor``
or a ``concurrent.futures.Future`` made on the broker's behalf. Helper modules the code under test
uses (``stateful.reach``) get the same rebinding of their globals and classes without being
traced. Primitives created at any time during the example (in ``__init__``, lazily per run, ...)
are therefore controlled. The same block installs the virtual clock (``stateful.clock``:
``time.sleep``, ``time.monotonic`` and the other clocks, in managed threads) and makes the
threads the code under test starts managed threads (``stateful.threads``). Every binding is
restored afterwards.

A controlled primitive used from a managed thread never blocks for real: a thread that would
block parks at a switch point, and the runtime runs another. Used from any other thread (the
test's own thread, between steps, when every managed thread is parked) it acts at once, and
raises ``RuntimeError`` rather than block, since nothing could ever release it.
"""

from __future__ import annotations

import _thread
import dataclasses
import functools
import os
import queue
import sys
import threading
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from stateful import clock, objectgraph, runtime, threads

_REAL_LOCK_TYPE = type(_thread.allocate_lock())
_REAL_RLOCK_TYPE = type(threading.RLock())
# Captured before any patching: isinstance checks and real construction need the originals.
_REAL_CONDITION = threading.Condition
_REAL_EVENT = threading.Event
_REAL_SEMAPHORE = threading.Semaphore
_REAL_BOUNDED_SEMAPHORE = threading.BoundedSemaphore
_REAL_SIMPLE_QUEUE = queue.SimpleQueue
_THREADING_FILE = os.path.normcase(threading.__file__)


def _creation_site() -> str:
    frame = sys._getframe(2)
    while frame.f_back is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


class _Primitive:
    kind = "primitive"

    def __init__(self) -> None:
        self._site = _creation_site()
        # Made while the threads run, a primitive is often made lazily (a per-run lock), and
        # two threads that both find none make two: its creation is where that race turns.
        entry = runtime.current()
        if entry is not None:
            entry[0].switch_point(f"create {self.kind}@{self._site}")

    def __repr__(self) -> str:
        return f"{self.kind}@{self._site}"


class Lock(_Primitive):
    """A controlled ``threading.Lock``."""

    kind = "Lock"

    def __init__(self) -> None:
        super().__init__()
        self._holder: object | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        entry = runtime.current()
        if entry is None:
            return self._acquire_unmanaged(blocking)
        rt, me = entry
        if not blocking:
            rt.switch_point(f"try-acquire {self!r}")
        else:
            rt.wait_until(
                self._free,
                f"acquire {self!r}",
                blocked_on=repr(self),
                timeout=None if timeout < 0 else timeout,
            )
        if not self._free():
            return False
        self._holder = me
        return True

    def release(self) -> None:
        if self._holder is None:
            raise RuntimeError("release unlocked lock")
        entry = runtime.current()
        if entry is not None:
            entry[0].switch_point(f"release {self!r}")
        self._holder = None

    def locked(self) -> bool:
        return self._holder is not None

    def _free(self) -> bool:
        return self._holder is None

    def _acquire_unmanaged(self, blocking: bool) -> bool:
        if self._holder is None:
            self._holder = threading.current_thread()
            return True
        if not blocking:
            return False
        raise RuntimeError(
            f"{self!r} is held by {self._holder} and thread "
            f"{threading.current_thread().name}, which the scheduler does not run, would block "
            f"on it for ever"
        )

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # Condition uses these three, as it does with the real primitives.
    def _release_save(self) -> object:
        self.release()
        return None

    def _acquire_restore(self, state: object) -> None:
        self.acquire()

    def _is_owned(self) -> bool:
        entry = runtime.current()
        me = entry[1] if entry is not None else threading.current_thread()
        return self._holder is me


class RLock(Lock):
    """A controlled ``threading.RLock``."""

    kind = "RLock"

    def __init__(self) -> None:
        super().__init__()
        self._count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._is_owned():
            self._count += 1
            return True
        if super().acquire(blocking, timeout):
            self._count = 1
            return True
        return False

    def release(self) -> None:
        if not self._is_owned():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if self._count == 0:
            super().release()

    def _release_save(self) -> object:
        count, self._count = self._count, 1
        self.release()
        return count

    def _acquire_restore(self, state: object) -> None:
        self.acquire()
        assert isinstance(state, int)
        self._count = state


class Condition(_Primitive):
    """A controlled ``threading.Condition``."""

    kind = "Condition"

    def __init__(self, lock: Lock | None = None) -> None:
        super().__init__()
        self._lock = lock if lock is not None else RLock()
        self._waiters: list[list[bool]] = []

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        if not self._lock._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        entry = runtime.current()
        if entry is None:
            raise RuntimeError(f"{self!r}.wait() from a thread the scheduler does not run")
        notified = [False]
        self._waiters.append(notified)
        saved = self._lock._release_save()
        try:
            entry[0].wait_until(
                lambda: notified[0],
                f"wait {self!r}",
                blocked_on=repr(self),
                timeout=timeout,
                for_work=True,
            )
        finally:
            if not notified[0]:
                self._waiters.remove(notified)
            self._lock._acquire_restore(saved)
        return notified[0]

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        result = predicate()
        while not result:
            if not self.wait(timeout) and timeout is not None:
                return predicate()
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        if not self._lock._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        for notified in self._waiters[:n]:
            notified[0] = True
        del self._waiters[:n]

    def notify_all(self) -> None:
        self.notify(len(self._waiters))


class Event(_Primitive):
    """A controlled ``threading.Event``."""

    kind = "Event"

    def __init__(self) -> None:
        super().__init__()
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._switch(f"set {self!r}")
        self._flag = True

    def clear(self) -> None:
        self._switch(f"clear {self!r}")
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        entry = runtime.current()
        if entry is None:
            if self._flag or timeout is not None:
                return self._flag
            raise RuntimeError(f"{self!r}.wait() from a thread the scheduler does not run")
        return entry[0].wait_until(
            self.is_set, f"wait {self!r}", blocked_on=repr(self), timeout=timeout, for_work=True
        )

    @staticmethod
    def _switch(note: str) -> None:
        entry = runtime.current()
        if entry is not None:
            entry[0].switch_point(note)


class Semaphore(_Primitive):
    """A controlled ``threading.Semaphore``."""

    kind = "Semaphore"

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        super().__init__()
        self._value = value

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        entry = runtime.current()
        if entry is None:
            if self._value == 0 and blocking and timeout is None:
                raise RuntimeError(f"{self!r} would block a thread the scheduler does not run")
        elif blocking:
            entry[0].wait_until(
                lambda: self._value > 0, f"acquire {self!r}", blocked_on=repr(self), timeout=timeout
            )
        else:
            entry[0].switch_point(f"try-acquire {self!r}")
        if self._value == 0:
            return False
        self._value -= 1
        return True

    def release(self, n: int = 1) -> None:
        entry = runtime.current()
        if entry is not None:
            entry[0].switch_point(f"release {self!r}")
        self._value += n

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class BoundedSemaphore(Semaphore):
    """A controlled ``threading.BoundedSemaphore``."""

    kind = "BoundedSemaphore"

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial = value

    def release(self, n: int = 1) -> None:
        if self._value + n > self._initial:
            raise ValueError("Semaphore released too many times")
        super().release(n)


class SimpleQueue(_Primitive):
    """A controlled ``queue.SimpleQueue``: ``put`` never blocks, ``get`` parks until an item is
    there (or its virtual timeout passes)."""

    kind = "SimpleQueue"
    # ``queue.SimpleQueue[int]`` in an annotation evaluated at run time.
    __class_getitem__: Any = classmethod(types.GenericAlias)

    def __init__(self) -> None:
        super().__init__()
        self._items: deque[Any] = deque()

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        entry = runtime.current()
        if entry is not None:
            entry[0].switch_point(f"put {self!r}")
        self._items.append(item)

    def put_nowait(self, item: Any) -> None:
        self.put(item, block=False)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        entry = runtime.current()
        if entry is None:
            if not self._items and block and timeout is None:
                raise RuntimeError(
                    f"{self!r}.get() would block a thread the scheduler does not run"
                )
        elif block:
            entry[0].wait_until(
                lambda: bool(self._items),
                f"get {self!r}",
                blocked_on=repr(self),
                timeout=timeout,
                for_work=True,
            )
        else:
            entry[0].switch_point(f"get-nowait {self!r}")
        if not self._items:
            raise queue.Empty
        return self._items.popleft()

    def get_nowait(self) -> Any:
        return self.get(block=False)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


_FACTORIES: dict[object, object] = {
    _thread.allocate_lock: Lock,
    threading.Lock: Lock,
    threading.RLock: RLock,
    threading.Condition: Condition,
    threading.Event: Event,
    threading.Semaphore: Semaphore,
    threading.BoundedSemaphore: BoundedSemaphore,
    queue.SimpleQueue: SimpleQueue,
}
_FACTORIES.update(clock.CONTROLLED)


def _proxy(real: types.ModuleType, overrides: dict[str, object]) -> types.ModuleType:
    proxy = types.ModuleType(real.__name__, real.__doc__)

    def passthrough(name: str) -> object:
        return getattr(real, name)

    setattr(proxy, "__getattr__", passthrough)  # noqa: B010 - module-level __getattr__ (PEP 562)
    proxy.__dict__.update(overrides)
    return proxy


_THREADING_PROXY = _proxy(
    threading,
    {
        "Lock": Lock,
        "RLock": RLock,
        "Condition": Condition,
        "Event": Event,
        "Semaphore": Semaphore,
        "BoundedSemaphore": BoundedSemaphore,
    },
)
_THREAD_PROXY = _proxy(_thread, {"allocate_lock": Lock, "allocate": Lock})
_MODULE_PROXIES = {id(threading): _THREADING_PROXY, id(_thread): _THREAD_PROXY}


class Replacements:
    """The controlled stand-in of each real primitive instance, made once, so that a Condition
    replaced in one place keeps sharing its lock with that lock replaced in another."""

    def __init__(self) -> None:
        self._made: dict[int, tuple[object, object | None]] = {}

    def of(self, value: object) -> object | None:
        made = self._made.get(id(value))
        if made is None:
            # The real instance is kept alive with its stand-in, so its id is not reused.
            made = (value, _controlled_instance(value, self))
            self._made[id(value)] = made
        return made[1]


def _controlled_instance(value: object, replacements: Replacements) -> object | None:
    if isinstance(value, _REAL_RLOCK_TYPE):
        return RLock()
    if isinstance(value, _REAL_LOCK_TYPE):
        return Lock()
    if isinstance(value, _REAL_CONDITION):
        lock = replacements.of(value._lock)  # type: ignore[attr-defined]
        return Condition(lock if isinstance(lock, Lock) else None)
    if isinstance(value, _REAL_EVENT):
        event = Event()
        event._flag = value.is_set()
        return event
    if isinstance(value, _REAL_BOUNDED_SEMAPHORE):
        return BoundedSemaphore(getattr(value, "_initial_value", 1))
    if isinstance(value, _REAL_SEMAPHORE):
        return Semaphore(value._value)
    if isinstance(value, _REAL_SIMPLE_QUEUE):
        stand_in = SimpleQueue()
        items = []
        while not value.empty():
            items.append(value.get_nowait())
        for item in items:  # both hold them: the real queue is back after the block
            value.put(item)
            stand_in.put(item)
        return stand_in
    return None


def _replacement(value: object, replacements: Replacements) -> object | None:
    if isinstance(value, types.ModuleType):
        return _MODULE_PROXIES.get(id(value))
    try:
        factory = _FACTORIES.get(value)
    except TypeError:  # unhashable module globals are never primitives
        return None
    if factory is not None:
        return factory
    return replacements.of(value)


def _called_from(traced_files: frozenset[str]) -> bool:
    """Whether the code asking for a primitive runs on behalf of a module under test."""
    frame = sys._getframe(2)
    if os.path.normcase(frame.f_code.co_filename) == _THREADING_FILE:
        return False  # threading's own internals (a Thread's Event, a Condition's RLock)
    while frame is not None:
        if os.path.normcase(frame.f_code.co_filename) in traced_files:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _stack_aware(
    controlled_factory: Callable[..., object], real: Callable[..., object], files: frozenset[str]
) -> Callable[..., object]:
    def make(*args: Any, **kwargs: Any) -> object:
        factory = controlled_factory if _called_from(files) else real
        return factory(*args, **kwargs)

    return make


def _patch_constructors(files: frozenset[str]) -> list[Callable[[], None]]:
    undo: list[Callable[[], None]] = []
    for module, overrides in (
        (threading, _THREADING_PROXY.__dict__),
        (_thread, _THREAD_PROXY.__dict__),
        (queue, {"SimpleQueue": SimpleQueue}),
    ):
        for name, factory in overrides.items():
            if name.startswith("__") or not hasattr(module, name):
                continue
            real = getattr(module, name)
            setattr(module, name, _stack_aware(factory, real, files))
            undo.append(functools.partial(setattr, module, name, real))
    return undo


@contextmanager
def controlled(
    modules: Iterable[types.ModuleType], helpers: Iterable[types.ModuleType] = ()
) -> Iterator[Replacements]:
    """Install controlled primitives in ``modules`` for the duration of the block. ``helpers``
    (modules the code under test uses, not traced) get the same rebinding of their globals and
    classes, but no tracing and no constructor patch. The block gets the ``Replacements`` made,
    to replace more instances with the same stand-ins."""
    modules = tuple(modules)
    files = frozenset(os.path.normcase(m.__file__) for m in modules if m.__file__)
    undo: list[Callable[[], None]] = []
    replacements = Replacements()
    try:
        undo.extend(_patch_constructors(files))
        undo.extend(clock.patch())
        undo.extend(threads.patch(files, Event, Lock))
        for module in (*modules, *helpers):
            namespace = vars(module)
            for name, value in list(namespace.items()):
                replacement = _replacement(value, replacements)
                if replacement is not None:
                    namespace[name] = replacement
                    undo.append(functools.partial(namespace.__setitem__, name, value))
                elif isinstance(value, type) and value.__module__ == module.__name__:
                    undo.extend(_patch_class(value, replacements))
        yield replacements
    finally:
        for restore in reversed(undo):
            restore()


def _patch_class(cls: type, replacements: Replacements) -> list[Callable[[], None]]:
    undo: list[Callable[[], None]] = []
    for name, value in list(vars(cls).items()):
        replacement = replacements.of(value)
        if replacement is not None:
            setattr(cls, name, replacement)
            undo.append(functools.partial(setattr, cls, name, value))
    if dataclasses.is_dataclass(cls):
        undo.extend(_patch_default_factories(cls))
    return undo


def _patch_default_factories(cls: type) -> list[Callable[[], None]]:
    """A ``field(default_factory=threading.Lock)`` keeps the real constructor it was given at
    class creation, in its ``Field`` and in a closure cell of the generated ``__init__``
    (``_dflt_NAME`` on 3.11, ``__dataclass_dflt_NAME__`` later): both get the controlled one."""
    undo: list[Callable[[], None]] = []
    init = vars(cls).get("__init__")
    cells = objectgraph.closure_cells(init) if isinstance(init, types.FunctionType) else {}
    for field in dataclasses.fields(cls):
        real = field.default_factory
        try:
            factory = _FACTORIES.get(real)
        except TypeError:  # an unhashable factory is no primitive constructor
            continue
        if factory is None:
            continue
        field.default_factory = factory  # type: ignore[assignment]
        undo.append(functools.partial(setattr, field, "default_factory", real))
        for cell_name in (f"_dflt_{field.name}", f"__dataclass_dflt_{field.name}__"):
            cell = cells.get(cell_name)
            if cell is not None and cell.cell_contents is real:
                cell.cell_contents = factory
                undo.append(functools.partial(setattr, cell, "cell_contents", real))
    return undo
