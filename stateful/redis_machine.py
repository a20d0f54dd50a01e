"""``RedisFaultMachine``: the broker machine against a Redis-backed broker, free-running, with
Redis's faults as operations.

A Redis server's timing is not the suite's to schedule, so the machine runs in free-running
mode (``RunBrokerMachine.free_running``), with the same operations, invariants and report, and:

* ``inject``, one more rule, at most ``MAX_FAULTS`` times per example: kill the reader
  task's connection (``CLIENT KILL``), kill the producers' pooled connections, or restart
  the server (AOF on, so every acknowledged write survives). It runs while the operations
  queued before it are still running on the producer threads and the loop.
* settling also waits for the broker's ``flush()``: the events Redis holds reach the
  subscriber queues through the network, which a few turns of the loop do not wait for.
* the documented outcome of a call that found Redis unavailable (``BrokerUnavailable``) is
  not an escaped exception: an ``emit`` or ``close`` that raised it is recorded as begun and
  never returned (so nothing is owed for it, and it may or may not have happened), and a
  ``subscribe`` that raised it is a client that went away (its request failed).
* the broker is closed (``aclose``) before the loop is, and a failure's report lists the steps
  as they ran, kept by the class in ``first_failure`` even if Hypothesis cannot make the
  failure happen again (free-running failures need not replay).

The implementation is ``broker.redis:RedisRunBroker`` unless the configured one
(``--broker-impl``) is a subclass of it; it reads its URL from ``RUNBROKER_REDIS_URL``. The
server to inject faults into is ``server``, set by the test (see ``tests/test_redis_machine.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar, Protocol

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from stateful import config
from stateful.harness import Harness, Op
from stateful.history import EmitRecord, Subscriber
from stateful.machine import RunBrokerMachine
from stateful.strategy import SchedulingStrategy

DEFAULT_IMPL = "broker.redis:RedisRunBroker"
MAX_FAULTS = 2
# A broker that has not delivered what Redis holds within this long is hung.
FLUSH_TIMEOUT = 15.0
# Restarts cost a server start each; connection kills are cheap.
FAULTS = ("kill-reader", "kill-producers", "kill-reader", "restart")


class FaultTarget(Protocol):
    """The test's Redis server, as far as the machine acts on it."""

    def restart(self) -> None: ...
    def kill_clients(self, name: str) -> int: ...


def redis_impl_spec() -> str:
    """The configured implementation if it is a ``RedisRunBroker``, else ours."""
    from broker.redis import RedisRunBroker

    configured = config.load_impl()
    return configured.spec if issubclass(configured.cls, RedisRunBroker) else DEFAULT_IMPL


class _FlushingHarness:
    """A free-running harness whose settle also waits for the broker's deliveries, and whose
    close closes the broker first."""

    def __init__(self, inner: Harness, broker: Any) -> None:
        self._inner = inner
        self._broker = broker
        self.crashes = inner.crashes

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._inner.loop

    def tick(self) -> int:
        return self._inner.tick()

    def on_producer(self, index: int, op: Op, label: str) -> None:
        self._inner.on_producer(index, op, label)

    def on_loop(self, op: Op) -> None:
        self._inner.on_loop(op)

    def on_loop_now(self, op: Op) -> None:
        self._inner.on_loop_now(op)

    def mark_loop(self, text: str) -> None:
        self._inner.mark_loop(text)

    def settle(self, strategy: SchedulingStrategy, label: str) -> None:
        self._inner.settle(strategy, label)
        flushed = asyncio.run_coroutine_threadsafe(self._broker.flush(), self.loop)
        try:
            flushed.result(FLUSH_TIMEOUT)
        except TimeoutError:
            flushed.cancel()
            raise AssertionError(
                f"the broker's flush() did not return within {FLUSH_TIMEOUT:g} s: it is not "
                "delivering what Redis holds for its subscribers"
            ) from None
        # The consumers take what flush() saw delivered, and leave after a terminal item.
        self._inner.settle(strategy, label)

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._broker.aclose(), self.loop).result(FLUSH_TIMEOUT)
        finally:
            self._inner.close()


class RedisFaultMachine(RunBrokerMachine):
    """See the module docstring."""

    free_running: ClassVar[bool] = True
    server: ClassVar[FaultTarget | None] = None
    first_failure: ClassVar[str | None] = None

    def __init__(self) -> None:
        super().__init__()
        from broker.redis import BrokerUnavailable

        self._unavailable = BrokerUnavailable
        self.harness = _FlushingHarness(self.harness, self.broker)
        self._faults = 0

    @precondition(lambda self: self._faults < MAX_FAULTS)
    @rule(fault=st.sampled_from(FAULTS))
    def inject(self, fault: str) -> None:
        """Break Redis or the broker's connections to it, while operations are in flight."""
        server = self.server
        assert server is not None, "set RedisFaultMachine.server to the test's Redis server"
        self._faults += 1
        self._log(f"fault({fault})")
        producers, reader = self.broker.client_names()
        if fault == "restart":
            server.restart()
        else:
            server.kill_clients(reader if fault == "kill-reader" else producers)

    def _emit(self, record: EmitRecord) -> None:
        # Begun, never returned: it may or may not have been recorded.
        with contextlib.suppress(self._unavailable):
            super()._emit(record)

    def _close(self, producer: int, run: str) -> None:
        with contextlib.suppress(self._unavailable):
            super()._close(producer, run)

    def _subscribe(self, sub: Subscriber) -> None:
        try:
            super()._subscribe(sub)
        except self._unavailable:
            # The request failed: the client went away without a queue.
            self._gates[sub] = asyncio.Event()
            sub.cancelled = sub.finished = self.harness.tick()

    def report(self) -> str:
        steps = "\n".join(f"  {step}" for step in self._steps)
        return f"{super().report()}\nSteps, as they ran (free-running):\n{steps}"

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            if self._failed and RedisFaultMachine.first_failure is None:
                RedisFaultMachine.first_failure = self.report()


def redis_machine(spec: str | None = None) -> type[RedisFaultMachine]:
    """A ``RedisFaultMachine`` subclass bound to ``spec`` (default: :func:`redis_impl_spec`)."""
    chosen = spec or redis_impl_spec()
    return type(f"RedisFaultMachine[{chosen}]", (RedisFaultMachine,), {"impl_spec": chosen})
