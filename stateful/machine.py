"""``RunBrokerMachine``: the Hypothesis state machine that drives a broker from real threads.

Its one rule, ``step``, performs an operation drawn by ``stateful.operations`` and queues it on
the thread where a real deployment runs it: ``Emit`` and ``Close`` on two producer threads;
``Subscribe`` (and, where the broker has replay, ``SubscribeFrom`` and ``Reconnect``) as
consumer tasks on the loop thread that read their queue until a terminal item and then
unsubscribe, as an SSE handler does; ``Unsubscribe`` by cancelling such a task. Nothing runs
until a ``RunInterleaved`` operation, whose ``PreemptionSchedule`` is drawn too: the pending
operations of all threads then run interleaved as it says, until every thread is idle and the
loop has settled. Runs come from a pool of two, so operations on one run collide often.

After every step the safety invariants are checked; after every settle, liveness and cleanup
too (``stateful.invariants``). On failure the report names the broken invariant, shows the
interleaving as a per-thread timeline and what every subscriber received.

The implementation under test is ``impl_spec`` if a subclass sets it, else the configured one
(``--broker-impl`` / ``BROKER_IMPL``); the contract it is judged by is ``conformance`` if a
subclass sets it, else the configured one (``--broker-items``, ``--broker-history``;
``stateful.conformance``). ``free_running = True`` runs the same machine on uncontrolled threads
(stress mode).
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from hypothesis import currently_in_test_context, note
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from stateful import config
from stateful.conformance import Conformance
from stateful.harness import ControlledHarness, FreeHarness, Harness
from stateful.history import (
    CloseRecord,
    EmitRecord,
    History,
    Noise,
    Subscriber,
    describe_item,
    is_event_or_marker,
    item_type,
)
from stateful.impl import BrokerImpl
from stateful.introspect import DISCOVERIES, SubscriberMaps, no_map_note
from stateful.invariants import check_crashes, check_safety, check_settled, describe_all
from stateful.operations import (
    PRODUCERS,
    RUN_SLOTS,
    Close,
    Emit,
    Operation,
    Options,
    Reconnect,
    Resume,
    RunInterleaved,
    Stall,
    Subscribe,
    SubscribeFrom,
    Unsubscribe,
    left_out_kinds,
    operations,
)
from stateful.replay import LEDGER
from stateful.report import timeline
from stateful.strategy import PctCursor, PreemptionCursor, RunToCompletion, SchedulingStrategy

F = TypeVar("F", bound=Callable[..., Any])


class _LazyReport:
    """Hypothesis formats a note only for the example it shows, so the report is built then."""

    def __init__(self, machine: RunBrokerMachine) -> None:
        self._machine = machine

    def __repr__(self) -> str:
        return self._machine.report()


def _reported(method: F) -> F:
    """On the first failure of an example, attach the timeline report to it: as a Hypothesis
    note inside a Hypothesis test, else as a note on the exception itself."""

    @functools.wraps(method)
    def wrapper(self: RunBrokerMachine, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except BaseException as error:
            if not self._failed:
                self._failed = True
                if currently_in_test_context():
                    note(_LazyReport(self))
                else:
                    error.add_note(self.report())
            raise

    return wrapper  # type: ignore[return-value]


class RunBrokerMachine(RuleBasedStateMachine):
    """Drives one broker instance per example; see the module docstring."""

    impl_spec: ClassVar[str | None] = None
    trace_modules: ClassVar[tuple[str, ...]] = ()
    free_running: ClassVar[bool] = False
    conformance: ClassVar[Conformance | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.impl: BrokerImpl = config.load_impl(self.impl_spec, self.trace_modules)
        self.contract = (
            self.conformance if self.conformance is not None else config.settings.conformance
        )
        self._is_noise = self.contract.noise_predicate()
        self.history = History(replays_history=self.contract.replays_history)
        self.harness: Harness
        if self.free_running:
            self.harness = FreeHarness(self.impl, PRODUCERS)
        else:
            self.harness = ControlledHarness(
                self.impl,
                PRODUCERS,
                watchdog_seconds=config.settings.watchdog_seconds,
                max_steps=config.settings.max_steps,
            )
        try:
            self.broker = self.impl.new()
            self.broker.bind_loop(self.harness.loop)
            if isinstance(self.harness, ControlledHarness):
                self.harness.adopt(self.broker)
        except BaseException:
            # No teardown follows a machine that was never built: put the patches back now.
            self.harness.close()
            raise
        self._maps = SubscriberMaps(m.__name__ for m in self.impl.modules)
        self._tasks: dict[Subscriber, asyncio.Task[None]] = {}
        # Subscribers that operations may name: not yet unsubscribed or reconnected.
        self._live: dict[str, Subscriber] = {}
        # Open while the client reads; a stalled client waits on its gate after each item.
        self._gates: dict[Subscriber, asyncio.Event] = {}
        self._steps: list[str] = []
        # Operations name a run by slot. A slot's run, once its close has run, stays for the
        # operations queued before the next round (to exercise late subscribers and late emits)
        # and is then replaced by a fresh run, so that races against close keep happening all
        # through a long example.
        self._runs = [f"r{slot + 1}" for slot in range(RUN_SLOTS)]
        self._all_runs = list(self._runs)
        self._closed_earlier: set[str] = set()
        self._settled = True
        self._pending = 0
        self._failed = False
        self._emits_settled: Counter[str] = Counter()
        self._left_out: tuple[str, ...] = ()
        # How each interleaved round ran, for explorers (``stateful.exhaustive``).
        self.rounds: list[PreemptionCursor | PctCursor] = []

    # -- the rules -----------------------------------------------------------------------------

    @initialize(kinds=left_out_kinds())
    def leave_out(self, kinds: tuple[str, ...]) -> None:
        """Leave these optional kinds of operation out of this example (swarm testing)."""
        self._left_out = kinds

    @rule(op=operations())
    @_reported
    def step(self, op: Operation) -> None:
        """Queue ``op`` on the thread where a deployment runs it, or, for ``RunInterleaved``, run
        everything queued."""
        match op:
            case Subscribe(slot=slot):
                self._start(self.history.new_subscriber(self._runs[slot]))
            case SubscribeFrom(slot=slot, back=back):
                run = self._runs[slot]
                self._start(self.history.new_subscriber(run, self._emits_settled[run] - back))
            case Reconnect(subscriber=name):
                old = self._live[name]
                self._cancel(old)
                ids = [item["id"] for item in old.items if isinstance(item.get("id"), int)]
                self._start(self.history.new_subscriber(old.run, ids[-1] if ids else None))
            case Unsubscribe(subscriber=name):
                self._cancel(self._live[name])
            case Emit(producer=producer, slot=slot, count=count):
                self._queue_emits(producer, self._runs[slot], count)
            case Close(producer=producer, slot=slot):
                self._queue_close(producer, self._runs[slot])
            case Stall(subscriber=name):
                self._stall(self._live[name])
            case Resume(subscriber=name):
                self._log(f"resume({name})")
                self._resume(self._live[name])
            case RunInterleaved(schedule=schedule):
                self.rounds.append(schedule.start())
                self._settle(self.rounds[-1], repr(op))

    def options(self) -> Options:
        """What the next operation may be; ``stateful.operations`` draws it from these."""
        return Options(
            replay=self.impl.replay,
            backlog_limit=self.impl.max_backlog is not None,
            live=tuple(self._live),
            settled_emits=tuple(self._emits_settled[run] for run in self._runs),
            pending=self._pending,
            left_out=self._left_out,
        )

    @invariant()
    @_reported
    def invariants_hold(self) -> None:
        # On the loop thread: in free-running mode the consumers append to what is checked.
        self.harness.on_loop_now(self._check_invariants)

    def _check_invariants(self) -> None:
        if self._settled:
            self._collect_leftovers()
        check_crashes(self.harness.crashes)
        check_safety(self.history)
        if self._settled:
            live: dict[str, list[Any]] = {run: [] for run in self._all_runs}
            for sub in self.history.subscribers:
                if sub.finished is None and sub.queue is not None:
                    live[sub.run].append(sub.queue)
            self._maps.learn(self.broker, live)
            check_settled(
                self.history,
                n_subscribers=self.broker.n_subscribers,
                is_done=self.broker.is_done,
                # With no map found, cleanup rests on n_subscribers alone, and the report says so.
                leftover_entries=None
                if self._maps.found_none
                else lambda run: self._maps.leftovers(self.broker, run),
                # Asking about a run nobody has used yet could create state in a broker that
                # makes it lazily (a per-run lock, say), and races on a fresh run, where such
                # state is made, would never be run.
                runs=[run for run in self._all_runs if self.history.touched(run)],
            )

    def teardown(self) -> None:
        """Drain what is pending, let stalled clients read, let everyone leave, check again."""
        try:
            if not self._failed:
                self._final_checks()
        finally:
            DISCOVERIES.record(self.impl.spec, self._maps)
            self.harness.close()

    @_reported
    def _final_checks(self) -> None:
        self._settle(RunToCompletion(), "teardown: run what is still pending")
        self.invariants_hold()
        for sub in self.history.subscribers:
            self._resume(sub)
        self._settle(RunToCompletion(), "teardown: stalled clients read again")
        self.invariants_hold()
        for sub in self.history.subscribers:
            if sub.finished is None:
                self._cancel(sub)
        self._settle(RunToCompletion(), "teardown: every client leaves")
        self.invariants_hold()

    # -- what runs on the harness's threads -----------------------------------------------------

    def _emit(self, record: EmitRecord) -> None:
        record.began = self.harness.tick()
        producer, seq = record.key
        self.broker.emit(record.run, {"type": "event", "p": producer, "n": seq})
        record.returned = self.harness.tick()

    def _close(self, producer: int, run: str) -> None:
        record = CloseRecord(run, producer, self.harness.tick())
        self.history.closes.append(record)
        self.broker.close(run)
        record.returned = self.harness.tick()

    def _subscribe(self, sub: Subscriber) -> None:
        """What an SSE handler does: subscribe, then read until a terminal item (``_read``),
        then unsubscribe, also when cancelled (``_finished``)."""
        sub.began = self.harness.tick()
        self.harness.mark_loop(f"{sub.name}: subscribe {sub.run}")
        if sub.last_event_id is None:
            queue = self.broker.subscribe(sub.run)
        else:
            queue = self.broker.subscribe(sub.run, last_event_id=sub.last_event_id)
        sub.queue = queue
        sub.subscribed = self.harness.tick()
        self._gates[sub] = asyncio.Event()
        self._gates[sub].set()
        task = self.harness.loop.create_task(self._read(sub, queue))
        task.add_done_callback(functools.partial(self._finished, sub, queue))
        self._tasks[sub] = task

    async def _read(self, sub: Subscriber, queue: Any) -> None:
        while True:
            item = self._record(sub, await queue.get())
            self.harness.mark_loop(f"{sub.name} got {describe_item(item)}")
            if item_type(item) in ("done", "overflow"):
                return
            await self._gates[sub].wait()

    def _record(self, sub: Subscriber, item: Any) -> Any:
        """Append ``item`` to what ``sub`` received, as ``Noise`` if the declared contract
        calls it that; return what was recorded."""
        if self._is_noise is not None and not is_event_or_marker(item) and self._is_noise(item):
            item = Noise(item)
        sub.received.append((self.harness.tick(), item))
        return item

    def _finished(self, sub: Subscriber, queue: Any, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.harness.crashes.append(_crash(sub, task.exception()))
        self.harness.mark_loop(f"{sub.name}: unsubscribe")
        self.broker.unsubscribe(sub.run, queue)
        sub.finished = self.harness.tick()

    # -- helpers --------------------------------------------------------------------------------

    def _collect_leftovers(self) -> None:
        """Items a finished consumer left unread arrived after its terminal item: record them
        so the safety checks see what the broker delivered after done."""
        for sub in self.history.subscribers:
            if sub.finished is None or sub.terminal is None or sub.queue is None:
                continue
            while not sub.queue.empty():
                self._record(sub, sub.queue.get_nowait())

    def _queue_emits(self, producer: int, run: str, count: int) -> None:
        for _ in range(count):
            record = self.history.new_emit(producer, run)
            self._log(f"emit({record}, {run})")
            self.harness.on_producer(
                producer, functools.partial(self._emit, record), f"emit {record} to {run}"
            )
        self._queued()

    def _queue_close(self, producer: int, run: str) -> None:
        self._log(f"close({producer}, {run})")
        self.harness.on_producer(
            producer, functools.partial(self._close, producer, run), f"close {run}"
        )
        self._queued()

    def _start(self, sub: Subscriber) -> None:
        self._log(f"subscribe({sub.name}, {sub.run}, last_event_id={sub.last_event_id})")
        self._live[sub.name] = sub

        def start() -> None:
            try:
                self._subscribe(sub)
            except Exception as error:
                self.harness.crashes.append(_crash(sub, error))
                sub.finished = self.harness.tick()

        self.harness.on_loop(start)
        self._queued()

    def _cancel(self, sub: Subscriber) -> None:
        self._log(f"unsubscribe({sub.name})")
        self._live.pop(sub.name, None)
        sub.cancelled = self.harness.tick()

        def cancel() -> None:
            if sub in self._tasks:
                self._tasks[sub].cancel()

        self.harness.on_loop(cancel)
        self._queued()

    def _stall(self, sub: Subscriber) -> None:
        self._log(f"stall({sub.name})")
        sub.stalled = True
        self.harness.on_loop(lambda: self._gates[sub].clear())
        self._queued()

    def _resume(self, sub: Subscriber) -> None:
        if sub.stalled:
            sub.stalled = False
            self.harness.on_loop(lambda: self._gates[sub].set())
            self._queued()

    def _settle(self, strategy: SchedulingStrategy, label: str) -> None:
        start = len(self.harness_trace_entries())
        self.harness.settle(strategy, label)
        self._settled = True
        self._pending = 0
        self._retire_closed_runs()
        self._emits_settled = Counter(emit.run for emit in self.history.emits.values())
        if isinstance(self.harness, ControlledHarness):
            LEDGER.record(
                (self.impl.spec, tuple(self._steps)),
                "\n".join(f"  {step}" for step in self._steps),
                self.harness.trace.since(start),
                self.thread_names(),
            )
        self._log(label)

    def _retire_closed_runs(self) -> None:
        for slot, run in enumerate(self._runs):
            if run in self._closed_earlier:
                self._runs[slot] = f"r{len(self._all_runs) + 1}"
                self._all_runs.append(self._runs[slot])
            elif self.history.close_returned(run) is not None:
                self._closed_earlier.add(run)

    def _queued(self) -> None:
        self._settled = False
        self._pending += 1

    def _log(self, step: str) -> None:
        self._steps.append(step)

    def harness_trace_entries(self) -> list[Any]:
        if isinstance(self.harness, ControlledHarness):
            return self.harness.trace.entries
        return []

    def thread_names(self) -> list[str]:
        if isinstance(self.harness, ControlledHarness):
            return [thread.name for thread in self.harness.runtime.threads]
        return [f"producer-{i}" for i in range(PRODUCERS)] + ["loop"]

    def report(self) -> str:
        """The failure report: the interleaving timeline and what each subscriber received."""
        parts = [f"Implementation under test: {self.impl.spec}"]
        if self._maps.found_none:
            parts.append(no_map_note(self.impl.spec))
        if self.contract != Conformance():
            parts.append(f"Declared contract: {self.contract}")
        if isinstance(self.harness, ControlledHarness):
            names = [t.name for t in self.harness.runtime.threads]
            parts.append("Interleaving, one column per thread (oldest first):")
            parts.append(timeline(self.harness.trace, names))
        parts.append("What each subscriber received:")
        parts.append(describe_all(self.history))
        return "\n".join(parts)


def _crash(sub: Subscriber, error: BaseException | None) -> Any:
    import traceback

    from stateful.runtime import Crash

    text = "".join(traceback.format_exception(error)) if error else ""
    return Crash("loop", f"the consumer task of {sub.name}", text)


def machine_for(
    spec: str,
    *,
    free_running: bool = False,
    trace_modules: tuple[str, ...] = (),
    conformance: Conformance | None = None,
) -> type[RunBrokerMachine]:
    """A ``RunBrokerMachine`` subclass bound to one implementation, e.g. for a kill matrix;
    ``trace_modules`` are traced and controlled besides the module defining the class, and the
    broker is judged by ``conformance`` (None: the configured one)."""
    name = "Free" if free_running else "Controlled"
    return type(
        f"{name}Machine[{spec}]",
        (RunBrokerMachine,),
        {
            "impl_spec": spec,
            "free_running": free_running,
            "trace_modules": trace_modules,
            "conformance": conformance,
        },
    )
