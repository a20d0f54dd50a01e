"""Replays a shrunk Hypothesis example, written as plain code, against a chosen broker.

When the state machine fails, Hypothesis prints the minimal failing example as a program::

    state = RunBrokerMachine()
    subscribers_0 = state.subscribe(slot=0)
    state.emit(count=1, producer=0, slot=0)
    state.run_interleaved(schedule=PreemptionSchedule(first=1, preemptions=((1, 0, True),)))
    state.teardown()

``replay(spec)`` runs those lines against the broker class ``spec`` the way Hypothesis's runner
ran them: it builds a ``RunBrokerMachine`` bound to ``spec``, checks the machine's invariants
once it is built and again after every step, and always tears the machine down, also when a
step fails. So a failure found once becomes a permanent test whose steps are readable code,
independent of Hypothesis's internal encoding of examples::

    with replay("tests.mutants.mutant_original_design:OriginalRunBroker") as state:
        subscribers_0 = state.subscribe(slot=0)
        state.emit(count=1, producer=0, slot=0)
        ...

The printed lines can be copied as they are:

* ``state = RunBrokerMachine()`` is what ``replay`` does; leave that line out.
* ``state.invariants_hold()`` lines (Hypothesis prints each invariant it checked) may be kept or
  left out: the invariants run after every step either way, exactly where they were printed.
* ``state.teardown()`` may be kept or left out: ``replay`` tears down when the block ends.
* a rule drawing with ``st.data()`` is printed as ``data=data(...)`` followed by comments
  ``# Draw 1 (label): value``; write it as ``data=drawn(value, ...)``, the values in order.

A step whose rule no longer exists, whose arguments no longer match, or whose precondition no
longer holds raises ``StaleStep``, so a regression test whose steps the machine has outgrown
fails loudly instead of testing something else.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis.strategies import SearchStrategy

from stateful.machine import RunBrokerMachine, machine_for
from stateful.strategy import PreemptionSchedule

__all__ = ["PreemptionSchedule", "Replay", "StaleStep", "drawn", "replay", "replay_steps"]


class StaleStep(Exception):
    """A replayed step does not fit the state machine as it is now."""


class Drawn:
    """Stands in for Hypothesis's ``data`` argument: each ``draw`` returns the next value."""

    def __init__(self, values: tuple[Any, ...]) -> None:
        self._values = list(values)

    def draw(self, strategy: SearchStrategy[Any], label: object = None) -> Any:
        if not self._values:
            raise StaleStep(f"the step draws more values than were given (drawing {label})")
        return self._values.pop(0)

    def __repr__(self) -> str:
        return f"drawn({', '.join(map(repr, self._values))})"


def drawn(*values: Any) -> Drawn:
    """The values a rule drew from ``st.data()``, in the order Hypothesis printed them."""
    return Drawn(values)


class Replay:
    """The ``state`` of a replayed example: call its rules as the printed steps do."""

    def __init__(self, machine: RunBrokerMachine) -> None:
        self.machine = machine
        self._rules = {rule.function.__name__: rule for rule in machine.rules}
        self._invariants = {inv.function.__name__ for inv in machine.invariants}
        self._torn_down = False

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._rules:
            return lambda **arguments: self._step(name, arguments)
        if name in self._invariants:
            # Printed by Hypothesis where it checked them; they have already run there.
            return lambda: None
        raise StaleStep(
            f"{type(self.machine).__name__} has no rule {name!r}; its rules are: "
            f"{', '.join(sorted(self._rules))}"
        )

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

    def _step(self, name: str, arguments: dict[str, Any]) -> Any:
        if self._torn_down:
            raise StaleStep(f"step {name} after teardown")
        rule = self._rules[name]
        try:
            inspect.signature(rule.function).bind(self.machine, **arguments)
        except TypeError as error:
            raise StaleStep(f"step {name}({_arguments(arguments)}): {error}") from None
        if not all(precondition(self.machine) for precondition in rule.preconditions):
            raise StaleStep(
                f"step {name}({_arguments(arguments)}): its precondition does not hold here, "
                f"so Hypothesis could not have run it"
            )
        result = rule.function(self.machine, **arguments)
        self.check_invariants()
        return result


def _arguments(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in arguments.items())


@contextmanager
def replay(spec: str) -> Iterator[Replay]:
    """A ``RunBrokerMachine`` bound to the broker class ``spec`` (``module:Class``), to run
    printed steps on; see the module docstring."""
    state = Replay(machine_for(spec)())
    try:
        state.check_invariants()
        yield state
    finally:
        state.teardown()


def replay_steps(steps: Callable[[Replay], None], spec: str) -> None:
    """Run ``steps`` (a function holding the printed lines) against ``spec``."""
    with replay(spec) as state:
        steps(state)
