"""Replays a shrunk Hypothesis example, written as plain code, against a chosen broker.

When the state machine fails, Hypothesis prints the minimal failing example as a program::

    state = RunBrokerMachine()
    state.leave_out(kinds=())
    state.step(op=Subscribe(slot=0))
    state.step(op=Emit(producer=0, slot=0, count=1))
    state.step(op=RunInterleaved(schedule=PreemptionSchedule(first=1, preemptions=((1, 0, True),))))
    state.teardown()

``replay(spec)`` runs those lines against the broker class ``spec`` the way Hypothesis's runner
ran them: it builds a ``RunBrokerMachine`` bound to ``spec``, checks the machine's invariants
once it is built and again after every step, and always tears the machine down, also when a
step fails. So a failure found once becomes a permanent test whose steps are readable code,
independent of Hypothesis's internal encoding of examples::

    with replay("tests.mutants.mutant_original_design:OriginalRunBroker") as state:
        state.step(op=Subscribe(slot=0))
        state.step(op=Emit(producer=0, slot=0, count=1))
        ...

The printed lines can be copied as they are:

* ``state = RunBrokerMachine()`` is what ``replay`` does; leave that line out.
* ``state.leave_out(kinds=...)`` (the optional kinds of operation the example could not draw)
  may be kept or left out: it restricts what could be drawn, not what the steps do.
* ``state.invariants_hold()`` lines (Hypothesis prints each invariant it checked) may be kept or
  left out: the invariants run after every step either way, exactly where they were printed.
* ``state.teardown()`` may be kept or left out: ``replay`` tears down when the block ends.

This module exports the operations, ``PreemptionSchedule`` and ``PctSchedule``, so the steps
need one import.
A step the machine could not have drawn where it stands (an operation that is not possible
there, a subscriber that is gone, a value out of range) raises ``StaleStep``, so a regression
test whose steps the machine has outgrown fails loudly instead of testing something else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from stateful.conformance import Conformance
from stateful.machine import RunBrokerMachine, machine_for
from stateful.operations import (
    OPTIONAL,
    Close,
    Emit,
    Operation,
    Reconnect,
    Resume,
    RunInterleaved,
    Stall,
    Subscribe,
    SubscribeFrom,
    Unsubscribe,
    why_not,
)
from stateful.strategy import PctSchedule, PreemptionSchedule

__all__ = [
    "Close",
    "Emit",
    "PctSchedule",
    "PreemptionSchedule",
    "Reconnect",
    "Replay",
    "Resume",
    "RunInterleaved",
    "StaleStep",
    "Stall",
    "Subscribe",
    "SubscribeFrom",
    "Unsubscribe",
    "replay",
    "replay_steps",
]


class StaleStep(Exception):
    """A replayed step does not fit the state machine as it is now."""


class Replay:
    """The ``state`` of a replayed example: its methods are the lines Hypothesis prints."""

    def __init__(self, machine: RunBrokerMachine) -> None:
        self.machine = machine
        self._torn_down = False

    def leave_out(self, kinds: tuple[str, ...]) -> None:
        """The printed first step: the optional kinds of operation the example leaves out."""
        unknown = set(kinds) - {kind.__name__ for kind in OPTIONAL}
        if unknown:
            raise StaleStep(f"leave_out: {sorted(unknown)} are not optional kinds of operation")
        self.machine.leave_out(kinds)

    def step(self, op: Operation) -> None:
        """One printed step: ``op`` performed as the machine's rule performs it."""
        if self._torn_down:
            raise StaleStep(f"step {op!r} after teardown")
        reason = why_not(op, self.machine.options())
        if reason is not None:
            raise StaleStep(f"step {op!r}: {reason}, so Hypothesis could not have drawn it")
        self.machine.step(op)
        self.check_invariants()

    def invariants_hold(self) -> None:
        """Printed by Hypothesis where it checked the invariants; they have already run there."""

    def check_invariants(self) -> None:
        """Every invariant whose preconditions hold, as Hypothesis checks them between steps."""
        for invariant in self.machine.invariants:
            if all(precondition(self.machine) for precondition in invariant.preconditions):
                invariant.function(self.machine)

    def teardown(self) -> None:
        """Tear the machine down (once; ``replay`` calls this when its block ends)."""
        if not self._torn_down:
            self._torn_down = True
            self.machine.teardown()


@contextmanager
def replay(
    spec: str, trace_modules: tuple[str, ...] = (), conformance: Conformance | None = None
) -> Iterator[Replay]:
    """A ``RunBrokerMachine`` bound to the broker class ``spec`` (``module:Class``), tracing
    ``trace_modules`` too and judging it by ``conformance`` (None: the configured one), to run
    printed steps on; see the module docstring."""
    machine = machine_for(spec, trace_modules=trace_modules, conformance=conformance)
    state = Replay(machine())
    try:
        state.check_invariants()
        yield state
    finally:
        state.teardown()


def replay_steps(
    steps: Callable[[Replay], None], spec: str, conformance: Conformance | None = None
) -> None:
    """Run ``steps`` (a function holding the printed lines) against ``spec``, judged by
    ``conformance`` (None: the configured one)."""
    with replay(spec, conformance=conformance) as state:
        steps(state)
