"""Directed tests of the zoo's mutants whose defect needs a particular interleaving.

Each test runs one mutant and the correct broker it was copied from, and expects the defect in
the mutant only. A broker whose threads the scheduler runs gets its interleaving as the steps
of a state-machine example, replayed by ``stateful.regression`` (as in ``tests/regressions/``).
A broker that starts threads of its own runs them for real, and the test puts the threads in
the order the defect needs with ``threading.Event``s at the defect's window: a stand-in for a
part of the broker (its inbox, its Condition, its dispatcher class, its lock) that reports where
a thread is and holds it there until the test lets it go. No test waits for time to pass.
"""

from __future__ import annotations

import asyncio
import importlib
import queue
import threading
from collections.abc import Callable
from typing import Any

import pytest

from stateful.errors import ScheduleFailure
from stateful.regression import (
    Emit,
    PreemptionSchedule,
    Replay,
    RunInterleaved,
    Subscribe,
    replay_steps,
)
from tests.mutants import load_class

Event = dict[str, Any]
DONE: Event = {"type": "done"}
# Generous: a bound for a thread that must arrive, on a loaded machine, not a pause.
ARRIVAL_SECONDS = 30

TIME_RETENTION = "tests.mutants.correct_time_retention:TimeRetentionBroker"
ABBA = "tests.mutants.mutant_abba_lock_order:AbbaLockOrderBroker"
DISPATCHER = "tests.mutants.correct_dispatcher_thread:DispatcherThreadBroker"
CLOSE_BYPASSES = "tests.mutants.mutant_close_bypasses_dispatcher:CloseBypassesDispatcherBroker"
TWO_DISPATCHERS = "tests.mutants.mutant_two_dispatchers:TwoDispatchersBroker"
CONDITION = "tests.mutants.correct_condition_dispatcher:ConditionDispatcherBroker"
WAIT_IF = "tests.mutants.mutant_condition_wait_if:ConditionWaitIfBroker"
LOST_WAKEUP = "tests.mutants.mutant_dispatcher_lost_wakeup:DispatcherLostWakeupBroker"
EXECUTOR = "tests.mutants.correct_executor_bridge:ExecutorBridgeBroker"
CALL_SOON_FROM_WORKER = "tests.mutants.mutant_call_soon_from_worker:CallSoonFromWorkerBroker"


def make(impl: str) -> Any:
    """A broker of the zoo bound to the running loop."""
    broker = load_class(impl)()
    broker.bind_loop(asyncio.get_running_loop())
    return broker


async def settle(rounds: int = 10) -> None:
    """Let the loop run every callback already scheduled (and those they schedule)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def drain(q: asyncio.Queue[Event]) -> list[Event]:
    items: list[Event] = []
    while not q.empty():
        items.append(q.get_nowait())
    return items


async def read_until_terminal(q: asyncio.Queue[Event]) -> list[Event]:
    items: list[Event] = []
    while True:
        item = await asyncio.wait_for(q.get(), timeout=ARRIVAL_SECONDS)
        items.append(item)
        if item.get("type") in ("done", "overflow"):
            return items


async def arrives(event: threading.Event) -> None:
    """Wait, off the loop, until another thread sets ``event``."""
    assert await asyncio.to_thread(event.wait, ARRIVAL_SECONDS)


# -- ABBA: replayed steps under the scheduler ----------------------------------------------------


def abba_steps(state: Replay) -> None:
    # The shrunk example the state machine printed (ci profile), copied as it was. In its last
    # round the loop's subscribe takes _closed_lock and is preempted before _subs_lock;
    # producer-0's emit takes _subs_lock and waits for _closed_lock, which subscribe holds.
    state.leave_out(kinds=("Close", "Unsubscribe", "SubscribeFrom", "Reconnect"))
    state.step(op=Subscribe(slot=0))
    state.step(op=Subscribe(slot=0))
    state.step(op=RunInterleaved(schedule=PreemptionSchedule(first=0, preemptions=())))
    state.step(op=Subscribe(slot=0))
    state.step(op=Emit(producer=0, slot=0, count=1))
    state.step(
        op=RunInterleaved(schedule=PreemptionSchedule(first=0, preemptions=((3, 0, False),)))
    )


def test_abba_lock_order_deadlocks_subscribe_and_emit() -> None:
    with pytest.raises(ScheduleFailure, match=r"^\[deadlock\] every thread with work left"):
        replay_steps(abba_steps, ABBA)
    replay_steps(abba_steps, TIME_RETENTION)


# -- a dispatcher thread fed by a SimpleQueue ----------------------------------------------------


class HeldInbox:
    """A broker's inbox whose consumer is held until ``opened`` is set."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.opened = threading.Event()

    def put(self, item: Any) -> None:
        self._queue.put(item)

    def get(self) -> Any:
        self.opened.wait()
        return self._queue.get()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("impl", "received"), [(DISPATCHER, [{"n": 1}, DONE]), (CLOSE_BYPASSES, [DONE])]
)
async def test_close_bypassing_the_dispatcher_lets_done_overtake_an_event(
    impl: str, received: list[Event]
) -> None:
    broker = make(impl)
    inbox = HeldInbox()
    broker._inbox = inbox
    reader = broker.subscribe("run")
    try:
        # The event waits in the inbox while close runs: the dispatcher is held.
        await asyncio.to_thread(broker.emit, "run", {"n": 1})
        await asyncio.to_thread(broker.close, "run")
    finally:
        inbox.opened.set()
    assert await read_until_terminal(reader) == received


class ContendedLock:
    """A lock that sets ``contended`` when an acquire has to wait for another holder."""

    def __init__(self, contended: threading.Event) -> None:
        self._lock = threading.Lock()
        self.contended = contended

    def __enter__(self) -> bool:
        if not self._lock.acquire(blocking=False):
            self.contended.set()
            self._lock.acquire()
        return True

    def __exit__(self, *_: object) -> None:
        self._lock.release()


@pytest.mark.asyncio
@pytest.mark.parametrize(("impl", "dispatchers"), [(DISPATCHER, 1), (TWO_DISPATCHERS, 2)])
async def test_two_first_emits_start_two_dispatchers_without_the_lock(
    impl: str, dispatchers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = importlib.import_module(impl.partition(":")[0])
    made: list[threading.Thread] = []
    first_inside = threading.Event()  # the first producer is starting the dispatcher
    second_decided = threading.Event()  # the second waits for the lock, or starts one too
    release = threading.Event()

    class HeldDispatcher(module._Dispatcher):  # type: ignore[name-defined, misc]
        def __init__(self, broker: Any) -> None:
            made.append(self)
            if len(made) == 1:
                first_inside.set()
                release.wait()
            else:
                second_decided.set()
            super().__init__(broker)

    monkeypatch.setattr(module, "_Dispatcher", HeldDispatcher)
    broker = make(impl)
    broker._lock = ContendedLock(second_decided)
    producers = [
        threading.Thread(target=broker.emit, args=("run", {"n": n}), name=f"producer-{n}")
        for n in (1, 2)
    ]
    try:
        producers[0].start()
        await arrives(first_inside)
        producers[1].start()
        await arrives(second_decided)
    finally:
        release.set()
    for producer in producers:
        await asyncio.to_thread(producer.join, ARRIVAL_SECONDS)
    assert len(made) == dispatchers
    assert all(dispatcher.is_alive() for dispatcher in made)


# -- a dispatcher thread waiting on a Condition --------------------------------------------------


class ProbeCondition(threading.Condition):
    """The broker's Condition, reporting to the test where its dispatcher thread is.

    Each ``wait()`` records how many items were pending when the dispatcher began to wait, and
    sets ``moved``. With ``hold_second_entry``, the dispatcher's second ``with`` on the Condition
    sets ``moved`` and waits for ``release`` before it takes the lock.
    """

    def __init__(self, pending: Callable[[], int], *, hold_second_entry: bool = False) -> None:
        super().__init__()
        self._pending = pending
        self._hold_second_entry = hold_second_entry
        self._entries = 0
        self.waits: list[int] = []
        self.moved = threading.Event()
        self.release = threading.Event()

    def __enter__(self) -> bool:
        if threading.current_thread().name == "broker-dispatcher":
            self._entries += 1
            if self._hold_second_entry and self._entries == 2:
                self.moved.set()
                self.release.wait()
        return bool(super().__enter__())

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(self._pending())
        self.moved.set()
        return super().wait(timeout)


def probed(impl: str, *, hold_second_entry: bool = False) -> tuple[Any, ProbeCondition]:
    """A Condition-dispatcher broker with a ``ProbeCondition``, bound to the running loop."""
    broker = load_class(impl)()
    probe = ProbeCondition(lambda: len(broker._pending), hold_second_entry=hold_second_entry)
    broker._cond = probe  # before bind_loop starts the dispatcher
    broker.bind_loop(asyncio.get_running_loop())
    return broker, probe


@pytest.mark.asyncio
@pytest.mark.parametrize(("impl", "defective"), [(CONDITION, False), (WAIT_IF, True)])
async def test_condition_wait_under_if_dies_of_a_notify_with_nothing_pending(
    impl: str, defective: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, probe = probed(impl)
    died: list[type[BaseException]] = []

    def record(args: threading.ExceptHookArgs) -> None:
        died.append(args.exc_type)
        probe.moved.set()

    monkeypatch.setattr(threading, "excepthook", record)
    await arrives(probe.moved)  # the dispatcher waits for work
    probe.moved.clear()
    broker.emit("nobody-listens", {"n": 1})  # appends nothing, and notifies
    await arrives(probe.moved)  # the dispatcher waited again, or died
    if defective:
        await asyncio.to_thread(broker._dispatcher.join, ARRIVAL_SECONDS)
        assert died == [IndexError]
        assert not broker._dispatcher.is_alive()
    else:
        assert died == []
        assert probe.waits == [0, 0]
        assert broker._dispatcher.is_alive()


@pytest.mark.asyncio
@pytest.mark.parametrize(("impl", "defective"), [(CONDITION, False), (LOST_WAKEUP, True)])
async def test_dispatcher_loses_a_notify_between_its_check_and_its_wait(
    impl: str, defective: bool
) -> None:
    broker, probe = probed(impl, hold_second_entry=True)
    reader = broker.subscribe("run")
    try:
        # The correct dispatcher checks and waits in its first critical section; the mutant has
        # checked and is held before the second, where it will wait.
        await arrives(probe.moved)
        probe.moved.clear()
        broker.emit("run", {"n": 1})  # appends and notifies
    finally:
        probe.release.set()
    await arrives(probe.moved)  # the dispatcher's next wait()
    if defective:
        assert probe.waits == [1]  # it waits, with the event pending and nobody to notify it
    else:
        assert probe.waits == [0, 0]  # it took the event first
        assert await asyncio.wait_for(reader.get(), ARRIVAL_SECONDS) == {"n": 1}


# -- an executor bridge --------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("impl", "delivered"), [(EXECUTOR, [{"n": 1}, DONE]), (CALL_SOON_FROM_WORKER, [])]
)
async def test_call_soon_from_the_executor_worker_is_refused_by_a_debug_loop(
    impl: str, delivered: list[Event]
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)  # asyncio then refuses call_soon from a thread other than the loop's
    try:
        broker = make(impl)
        reader = broker.subscribe("run")
        await asyncio.to_thread(broker.emit, "run", {"n": 1})
        await asyncio.to_thread(broker.close, "run")
        # The worker runs jobs in order: once this one has run, so have the deliveries.
        await asyncio.to_thread(broker._executor.submit(lambda: None).result, ARRIVAL_SECONDS)
        await settle()
        assert drain(reader) == delivered
    finally:
        loop.set_debug(False)
