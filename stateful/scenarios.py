"""Small-scope races: every pair of racing operations, run under every schedule in a bound.

The state machine draws long random examples with random schedules; a race that needs three
well-placed preemptions is beyond the reach of random schedules (``stateful.exhaustive``).
Here each scenario is a few operations that set a run up, run one after another, and then two
operations that race: one on the loop and one on a producer thread, or one on each producer
thread. ``explore_scenario`` runs a scenario against a broker under every schedule within
``MAX_PREEMPTIONS`` synchronisation-point preemptions, each from a fresh machine, with every
invariant of the machine checked as usual.

The scenarios are not written for particular bugs: they are every such pair from two starting
points, a run nobody has touched (where lazily made per-run state is created) and a run with a
reader that has received one event (where delivery, unsubscribing and resuming race). The first
failure is raised with the steps that produce it, printed as ``state.step(op=...)`` lines ready
to paste into a regression test (``stateful.regression``), where they replay the same
interleaving every time.
"""

from __future__ import annotations

from dataclasses import dataclass

from stateful import config
from stateful.conformance import Conformance
from stateful.exhaustive import explore
from stateful.impl import BrokerImpl
from stateful.operations import (
    Close,
    Emit,
    Operation,
    Reconnect,
    RunInterleaved,
    Subscribe,
    SubscribeFrom,
    Unsubscribe,
)
from stateful.regression import replay
from stateful.strategy import PreemptionCursor, PreemptionSchedule

# Three preemptions are what two threads need to interleave inside two critical sections that a
# lock made twice no longer excludes, the deepest race of two operations known to the suite; a
# preemption at most four synchronisation points after the previous switch keeps a broker with
# per-run locks under a few thousand schedules.
MAX_PREEMPTIONS = 3
MAX_GAP = 4


@dataclass(frozen=True)
class Scenario:
    """``setup`` run one after another, then ``race`` under every schedule in the bound."""

    start: str
    setup: tuple[Operation, ...]
    race: tuple[Operation, Operation]

    @property
    def name(self) -> str:
        return f"{self.start}: " + " vs ".join(type(op).__name__ for op in self.race)

    @property
    def test_id(self) -> str:
        return self.name.replace(": ", "-").replace(" ", "-")

    def applies_to(self, impl: BrokerImpl) -> bool:
        """Whether ``impl`` can run this race: one with replay operations needs replay."""
        return impl.replay or not any(isinstance(op, SubscribeFrom | Reconnect) for op in self.race)

    def steps(self, schedule: PreemptionSchedule) -> list[Operation]:
        """The operations to perform, the race run under ``schedule``."""
        settled = [*self.setup, RunInterleaved(PreemptionSchedule())] if self.setup else []
        return [*settled, *self.race, RunInterleaved(schedule)]


def _scenarios() -> tuple[Scenario, ...]:
    emit = Emit(producer=0, slot=0, count=1)
    close = Close(producer=0, slot=0)
    producer_pairs: list[tuple[Operation, Operation]] = [
        (emit, Emit(producer=1, slot=0, count=1)),
        (emit, Close(producer=1, slot=0)),
        (close, Close(producer=1, slot=0)),
    ]
    starts: list[tuple[str, tuple[Operation, ...], tuple[Operation, ...]]] = [
        ("fresh run", (), (Subscribe(slot=0),)),
        (
            "run with a reader",
            (Subscribe(slot=0), Emit(producer=0, slot=0, count=1)),
            (
                Subscribe(slot=0),
                Unsubscribe(subscriber="s1"),
                SubscribeFrom(slot=0, back=1),
                Reconnect(subscriber="s1"),
            ),
        ),
    ]
    scenarios = []
    for start, setup, on_loop in starts:
        pairs = [(loop_op, producer_op) for loop_op in on_loop for producer_op in (emit, close)]
        scenarios += [Scenario(start, setup, race) for race in (*pairs, *producer_pairs)]
    return tuple(scenarios)


SCENARIOS = _scenarios()


def explore_scenario(
    scenario: Scenario,
    spec: str,
    trace_modules: tuple[str, ...] = (),
    conformance: Conformance | None = None,
) -> int:
    """Run ``scenario`` against ``spec``, judged by ``conformance`` (None: the configured one),
    under every schedule in the bound; return how many schedules ran. The first failure
    propagates, with the steps that produce it as a note."""

    def execute(schedule: PreemptionSchedule) -> PreemptionCursor:
        steps = scenario.steps(schedule)
        try:
            with replay(spec, trace_modules, conformance) as state:
                for op in steps:
                    state.step(op=op)
                cursor = state.machine.rounds[-1]
                assert isinstance(cursor, PreemptionCursor)  # the schedule it was given
                return cursor
        except Exception as error:
            error.add_note(_found(scenario, steps))
            raise

    return explore(execute, MAX_PREEMPTIONS, MAX_GAP)


def explore_all(
    spec: str, trace_modules: tuple[str, ...] = (), conformance: Conformance | None = None
) -> int:
    """Every scenario the broker can run (those with replay only if it has replay), in order;
    return how many schedules ran. The first failure propagates, as ``explore_scenario``'s."""
    impl = config.load_impl(spec, trace_modules)
    return sum(
        explore_scenario(scenario, spec, trace_modules, conformance)
        for scenario in SCENARIOS
        if scenario.applies_to(impl)
    )


def _found(scenario: Scenario, steps: list[Operation]) -> str:
    printed = "\n".join(f"    state.step(op={op!r})" for op in steps)
    return (
        f"Found by exploring the small-scope race {scenario.name!r} under every schedule with "
        f"up to {MAX_PREEMPTIONS} preemptions. Its steps:\n{printed}"
    )
