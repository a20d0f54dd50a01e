"""An asyncio event loop that runs on its own managed thread, scheduled like the others.

``ControlledLoop`` is a plain ``SelectorEventLoop`` with two changes that make it deterministic:

* its selector parks the loop thread at the top of every loop iteration. If callbacks are ready
  that is an ordinary switch point, so one *loop step* (running the ready callbacks once) is a
  unit the strategy interleaves with the producers. If nothing is ready the loop thread is idle
  and becomes runnable again only when another thread calls ``call_soon_threadsafe`` or virtual
  time reaches its next timer;
* ``time()`` reads the runtime's virtual clock, so ``call_later`` timers fire in a fixed order.

Lines of traced modules that run inside callbacks and tasks are switch points too, as on any
managed thread. An exception that escapes a callback is recorded as a crash of the loop thread.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from contextvars import Context
from typing import Any, TypeVar, TypeVarTuple

from stateful.runtime import ManagedThread, Runtime, current

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class _SchedulingSelector(selectors.BaseSelector):
    """Wraps the real selector; its ``select`` is where the loop thread yields."""

    def __init__(self, runtime: Runtime) -> None:
        self._real = selectors.DefaultSelector()
        self._runtime = runtime
        self.wakeup_pending = False

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            # A plain switch point, not a synchronisation point: preemptions counted in
            # synchronisation points should land in the broker's code, not between callbacks.
            self._runtime.switch_point("loop step: run ready callbacks", sync=False)
        elif not self.wakeup_pending:
            self._runtime.wait_until(
                lambda: self.wakeup_pending, "loop idle", blocked_on=None, timeout=timeout
            )
        self.wakeup_pending = False
        return self._real.select(0)

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class ControlledLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose iterations and clock belong to a ``Runtime``."""

    def __init__(self, runtime: Runtime) -> None:
        self._scheduling_selector = _SchedulingSelector(runtime)
        self._runtime = runtime
        super().__init__(self._scheduling_selector)
        self.set_exception_handler(self._record_exception)
        self.managed: ManagedThread = runtime._spawn("loop", self._run)

    def time(self) -> float:
        return self._runtime.clock.now

    def call_soon_threadsafe(
        self,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: Context | None = None,
    ) -> asyncio.Handle:
        entry = current()
        if entry is not None and entry[0] is self._runtime:
            self._runtime.switch_point("call_soon_threadsafe")
        handle = super().call_soon_threadsafe(callback, *args, context=context)
        self._scheduling_selector.wakeup_pending = True
        return handle

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Start ``coro`` as a task at the loop's next turn; called from the controller."""
        return asyncio.run_coroutine_threadsafe(coro, self)

    def stop_and_wait(self) -> None:
        """Stop ``run_forever`` and let the loop thread finish (under the runtime)."""
        if not self.managed.finished:
            self.call_soon_threadsafe(self.stop)

    def _run(self) -> None:
        asyncio.set_event_loop(self)
        try:
            self.run_forever()
        finally:
            asyncio.set_event_loop(None)

    def _record_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exception = context.get("exception")
        detail = context.get("message", "")
        if exception is not None:
            import traceback

            detail += "\n" + "".join(traceback.format_exception(exception))
        self._runtime.record_crash("loop", "a loop callback", detail)
