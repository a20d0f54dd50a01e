"""Running a state machine as a test: seeding, and turning ``Flaky`` into a diagnosis.

``run_machine`` is what the test files, the kill matrix and ``python -m stateful.killmatrix``
call. It runs a ``RunBrokerMachine`` class under Hypothesis with the given settings and seed;
when Hypothesis reports that a failure did not replay (``Flaky``), it raises ``Nondeterminism``
with the place where the two executions diverged (``stateful.replay``) instead.
"""

from __future__ import annotations

from hypothesis import seed as hypothesis_seed
from hypothesis import settings as Settings
from hypothesis.errors import Flaky
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from stateful.errors import Nondeterminism
from stateful.replay import LEDGER


def run_machine(
    machine: type[RuleBasedStateMachine],
    *,
    settings: Settings | None = None,
    seed: int | None = None,
) -> None:
    """Run ``machine`` as a Hypothesis test; raise its first failure, if any."""
    LEDGER.reset()
    if seed is not None:
        machine = hypothesis_seed(seed)(type(machine.__name__, (machine,), {}))
    try:
        run_state_machine_as_test(machine, settings=settings)
    except Flaky as error:
        divergence = LEDGER.last_divergence
        if divergence is None:
            raise
        raise Nondeterminism(divergence.explain()) from error
