"""Bounded state: a broker forgets the runs it has served, as its retention says.

A broker that never forgets a closed run leaks a little per run: no single request notices, and a
long-lived server dies of it. ``check_bounded_state(spec)`` serves many runs with one broker, as
a server does over its life: a run gets a reader that reads to ``done``, a reader that leaves
early, events, ``close``, and a reader that arrives after ``close``; every other run has no
reader until after ``close``. Then it measures what the broker still holds, two ways:

* **Run ids, by introspection.** Every container reachable from the broker (its attributes,
  those of the objects of its own package that it holds, and the dicts, sets, lists, deques and
  tuples inside them, walked by ``stateful.objectgraph``) and from the globals of its modules is
  searched for the served runs' ids, as keys or members. No more runs than the retention allows
  may be found (``check_retained_runs``).
* **Memory, with tracemalloc.** After a batch of runs, each of the next two batches must leave no
  more than ``MAX_GROWTH_PER_RUN`` bytes a run more allocated (``check_memory_growth``; the smaller
  of the two counts): this sees what the broker keeps per run without its id (a list of per-run
  callbacks, say).

What the retention allows: a broker whose constructor takes ``retain_closed_runs`` or
``max_closed_runs`` gets ``SMALL_RETENTION`` and may keep that many closed runs. One that takes
``retain_closed_seconds`` and a ``clock`` instead gets a window of ``SMALL_RETENTION`` seconds on
a virtual clock that advances a second per run, and may keep the runs closed within it, the
bounds included. Any other may keep ``--max-retained-runs`` of them (``config.settings``). A
broker that takes a ``clock`` always gets the virtual one, so that what it forgets does not
depend on how fast the machine is.

The broker runs on real threads, one call at a time: this thread runs the loop, one producer
thread emits and closes, and every call completes before the next begins. So the check is
deterministic without the scheduler, and cheap enough for every gate run; races are the state
machine's and the small-scope races' business. A subscriber that gets no ``done`` within the
watchdog's seconds of its run's close fails ``no-hang-after-done``; an exception from the broker
fails ``no-exception``.

``python -m stateful.boundedstate [module:Class ...]`` prints what each broker of the mutant zoo
(or each one named) keeps, without judging it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import inspect
import traceback
import tracemalloc
import types
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from stateful import config, objectgraph
from stateful.errors import ScheduleFailure, WatchdogTimeout
from stateful.history import TERMINAL_TYPES, item_type
from stateful.impl import BrokerImpl
from stateful.invariants import check_memory_growth, check_retained_runs, violation

#: The retention given to a broker that takes one: small, so that a few batches exceed it.
SMALL_RETENTION = 3
#: Runs served per batch: three batches after the warm-up are measured with tracemalloc.
BATCH = 64
#: The warm-up serves this many runs per run the broker may keep (and a batch): the tables that
#: hold a broker's closed runs have grown to their steady size by then, since a table of n live
#: entries that sees insertions and deletions is resized for 3n at the latest after 2n of them.
WARM_UP_PER_RETAINED_RUN = 4
#: A correct broker's memory moves by a resized table now and then, not by a record per run.
MAX_GROWTH_PER_RUN = 32
COUNT_PARAMETERS = ("retain_closed_runs", "max_closed_runs")


class VirtualClock:
    """The ``clock`` a broker is given: it reads the time the churn sets."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Retention:
    """How the broker is built for the check, and how many closed runs it may keep."""

    kwargs: dict[str, Any]
    allowed: int
    described: str


def retention_for(impl: BrokerImpl, clock: VirtualClock, max_retained_runs: int) -> Retention:
    """The small retention ``impl``'s constructor can be given, or the user's bound."""
    parameters = inspect.signature(impl.cls).parameters
    kwargs: dict[str, Any] = dict(impl.kwargs)
    if "clock" in parameters:
        kwargs["clock"] = clock
    for name in COUNT_PARAMETERS:
        if name in parameters:
            kwargs[name] = SMALL_RETENTION
            return Retention(kwargs, SMALL_RETENTION, f"{name}={SMALL_RETENTION}")
    if "retain_closed_seconds" in parameters and "clock" in parameters:
        kwargs["retain_closed_seconds"] = float(SMALL_RETENTION)
        described = f"retain_closed_seconds={SMALL_RETENTION}, one run closed a second"
        # Closed 0, 1, ..., SMALL_RETENTION seconds ago: either bound of the window may count.
        return Retention(kwargs, SMALL_RETENTION + 1, described)
    return Retention(kwargs, max_retained_runs, f"--max-retained-runs={max_retained_runs}")


@dataclass(frozen=True)
class Measurement:
    """What a broker kept of the runs it served."""

    retention: Retention
    served: int
    #: Each container path that holds some of the served runs' ids, with those ids.
    holders: dict[str, set[str]]
    #: Bytes more allocated after the second measured batch than after the first.
    growth: int
    #: The lines that allocated the most of ``growth``, one a line.
    allocated_at: str

    @property
    def kept(self) -> int:
        return len(set().union(*self.holders.values()))


def measure_bounded_state(spec: str, trace_modules: tuple[str, ...] = ()) -> Measurement:
    """Serve runs with a broker of class ``spec`` and measure what it keeps of them (see the
    module docstring). Raises only for a hang or an exception."""
    impl = config.load_impl(spec, trace_modules)
    clock = VirtualClock()
    retention = retention_for(impl, clock, config.settings.max_retained_runs)
    with _Churn(impl, retention, clock) as churn:
        churn.serve(WARM_UP_PER_RETAINED_RUN * retention.allowed + BATCH)
        growth, allocated_at = _growth_over_batch(churn)
        gc.collect()
        served = {_run_id(index) for index in range(churn.served)}
        holders = retained_run_ids(churn.roots(), served, _own_types(impl))
        return Measurement(retention, churn.served, holders, growth, allocated_at)


def check_bounded_state(spec: str, trace_modules: tuple[str, ...] = ()) -> int:
    """Fail ``bounded-state`` if a broker of class ``spec`` keeps more of the runs it served
    than its retention allows, or more memory for each; return how many runs were served."""
    measured = measure_bounded_state(spec, trace_modules)
    retention = measured.retention
    check_retained_runs(measured.served, measured.holders, retention.allowed, retention.described)
    check_memory_growth(BATCH, measured.growth, MAX_GROWTH_PER_RUN, measured.allocated_at)
    return measured.served


def _growth_over_batch(churn: _Churn) -> tuple[int, str]:
    """How many bytes more stay allocated after a batch of runs than before it, the smaller of
    two batches in a row, and where the most of them were allocated."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        churn.serve(BATCH)
        gc.collect()
        before = tracemalloc.take_snapshot()
        # Measured after the snapshot, which is allocated while tracing and stays alive.
        sizes = [tracemalloc.get_traced_memory()[0]]
        for _ in range(2):
            churn.serve(BATCH)
            gc.collect()
            sizes.append(tracemalloc.get_traced_memory()[0])
        after = tracemalloc.take_snapshot()
    finally:
        if started:
            tracemalloc.stop()
    # What a broker keeps of every run shows in both batches; a table resized, or an object
    # freed a batch late, in one of them at most.
    growth = min(sizes[1] - sizes[0], sizes[2] - sizes[1])
    top = after.compare_to(before, "lineno")[:3]
    return growth, "\n".join(f"  {stat}" for stat in top)


def _own_types(impl: BrokerImpl) -> Callable[[Any], bool]:
    """Whether an object's class belongs to the broker's code: its modules, or their package."""
    names = {module.__name__ for module in impl.modules}
    packages = tuple(f"{name.partition('.')[0]}." for name in names)

    def own(value: Any) -> bool:
        module = type(value).__module__
        return module in names or module.startswith(packages)

    return own


def retained_run_ids(
    roots: dict[str, Any], run_ids: set[str], own: Callable[[Any], bool]
) -> dict[str, set[str]]:
    """Each container reachable from ``roots`` that holds some of ``run_ids`` as keys or
    members, by its path from a root, with the ids it holds. Walked as ``stateful.objectgraph``
    walks (containers, callables, and the attributes of objects ``own`` accepts); not modules,
    classes or other objects (the event loop, locks, threads)."""
    holders: dict[str, set[str]] = {}
    for edge in objectgraph.walk(roots, own):
        if isinstance(edge.child, str) and edge.child in run_ids:
            holders.setdefault(objectgraph.render(edge.root, edge.path), set()).add(edge.child)
    return holders


class _Churn:
    """One broker serving runs one call at a time; see the module docstring."""

    def __init__(self, impl: BrokerImpl, retention: Retention, clock: VirtualClock) -> None:
        self._impl = impl
        self._clock = clock
        self._timeout = config.settings.watchdog_seconds
        self._loop = asyncio.new_event_loop()
        self._loop_errors: list[dict[str, Any]] = []
        self._loop.set_exception_handler(lambda _, context: self._loop_errors.append(context))
        self._producer = ThreadPoolExecutor(1, thread_name_prefix="bounded-state-producer")
        # Only counted: a record of the ids served would be memory that grows with them.
        self.served = 0
        self.broker = self._call("the constructor", lambda: impl.cls(**retention.kwargs))
        self._call("bind_loop", lambda: self.broker.bind_loop(self._loop))

    def __enter__(self) -> _Churn:
        return self

    def __exit__(self, *_: object) -> None:
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()
        # A producer stuck in the broker (a failure already raised) must not hang the suite.
        self._producer.shutdown(wait=False, cancel_futures=True)

    def roots(self) -> dict[str, Any]:
        """Where the broker's state can be reached from: the broker, its modules' globals."""
        found: dict[str, Any] = {"broker": self.broker}
        for module in self._impl.modules:
            for name, value in vars(module).items():
                if not name.startswith("__") and not isinstance(
                    value, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
                ):
                    found[f"{module.__name__}.{name}"] = value
        return found

    def serve(self, runs: int) -> None:
        for index in range(self.served, self.served + runs):
            run_id = _run_id(index)
            self.served += 1
            if index % 2:
                self._close(run_id, events=1)
            else:
                self._serve_with_readers(run_id)
            self._late_reader(run_id)
            self._clock.now += 1.0

    def _serve_with_readers(self, run_id: str) -> None:
        reader = self._subscribe(run_id)
        leaver = self._subscribe(run_id)
        self._produce("emit", lambda: self.broker.emit(run_id, {"type": "event", "n": 0}))
        leaver.cancel()
        self._loop.run_until_complete(asyncio.wait([leaver]))
        self._close(run_id, events=2)
        self._wait_for_done(run_id, reader)

    def _late_reader(self, run_id: str) -> None:
        self._wait_for_done(run_id, self._subscribe(run_id, last_event_id=1))

    def _close(self, run_id: str, events: int) -> None:
        def produce() -> None:
            for n in range(events):
                self.broker.emit(run_id, {"type": "event", "n": n + 1})
            self.broker.close(run_id)

        self._produce("emit or close", produce)

    def _subscribe(self, run_id: str, last_event_id: int | None = None) -> asyncio.Task[None]:
        async def subscribe() -> asyncio.Task[None]:
            if last_event_id is not None and self._impl.replay:
                queue = self.broker.subscribe(run_id, last_event_id=last_event_id)
            else:
                queue = self.broker.subscribe(run_id)
            return asyncio.ensure_future(self._read(run_id, queue))

        task: asyncio.Task[None] = self._call(
            "subscribe", lambda: self._loop.run_until_complete(subscribe())
        )
        return task

    async def _read(self, run_id: str, queue: Any) -> None:
        try:
            while item_type(await queue.get()) not in TERMINAL_TYPES:
                pass
        finally:
            self.broker.unsubscribe(run_id, queue)

    def _wait_for_done(self, run_id: Hashable, reader: asyncio.Task[None]) -> None:
        try:
            self._loop.run_until_complete(asyncio.wait_for(reader, self._timeout))
        except TimeoutError:
            raise violation(
                "no-hang-after-done",
                f"while serving runs for the bounded-state check, a subscriber of {run_id!r} "
                f"got no done within {self._timeout:g}s of its close",
            ) from None
        except Exception as error:
            raise _crashed("a subscriber's reading or unsubscribe", error) from error
        self._check_loop()

    def _produce(self, what: str, call: Callable[[], None]) -> None:
        future = self._producer.submit(call)
        try:
            future.result(self._timeout)
        except TimeoutError:
            raise WatchdogTimeout(
                f"while serving runs for the bounded-state check, {what} on the producer thread "
                f"did not return within {self._timeout:g}s: producers must never block"
            ) from None
        except Exception as error:
            raise _crashed(what, error) from error
        self._check_loop()

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            result = call()
        except Exception as error:
            raise _crashed(what, error) from error
        self._check_loop()
        return result

    def _check_loop(self) -> None:
        if self._loop_errors:
            context = self._loop_errors[0]
            error = context.get("exception")
            text = "".join(traceback.format_exception(error)) if error else context["message"]
            raise violation(
                "no-exception",
                f"while serving runs for the bounded-state check, a loop callback failed:\n{text}",
            )


def _run_id(index: int) -> str:
    return f"bounded-state-run-{index}"


def _crashed(what: str, error: BaseException) -> Exception:
    return violation(
        "no-exception",
        f"while serving runs for the bounded-state check, {what} raised:\n"
        + "".join(traceback.format_exception(error)),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="What each broker keeps of the runs it served, as the bounded-state check "
        "measures it (it fails a broker beyond either limit)."
    )
    parser.add_argument("--registry", default="tests.mutants", help="module with a zoo()")
    parser.add_argument("specs", nargs="*", help="module:Class to measure (default: the registry)")
    args = parser.parse_args(argv)
    specs = args.specs or [entry.impl for entry in importlib.import_module(args.registry).zoo()]
    print(
        f"bounded state: runs served one call at a time; at most {MAX_GROWTH_PER_RUN} bytes a "
        f"run over a batch of {BATCH}\n"
    )
    print(f"{'broker':<58} {'retention':<26} {'served':>6} {'kept':>5} {'bytes/run':>9}")
    for spec in specs:
        name = spec.rpartition(".")[2]
        try:
            measured = measure_bounded_state(spec)
        except ScheduleFailure as failure:
            print(f"{name:<58} {failure}".splitlines()[0])
            continue
        print(
            f"{name:<58} {measured.retention.described:<26} {measured.served:>6} "
            f"{measured.kept:>5} {measured.growth / BATCH:>9.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
