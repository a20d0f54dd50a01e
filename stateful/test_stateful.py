"""The stateful suite: ``RunBrokerMachine``, the small-scope races and the bounded-state check
against the configured broker.

``pytest stateful/ --broker-impl=module:Class`` runs it against any broker class; the default
is the package's own ``broker:RunBroker``. Each small-scope race (``stateful.scenarios``) runs
two operations under every schedule within a preemption bound, which reaches the races that need
more well-placed preemptions than random schedules hit; they come first, being quick and the
same on every run. The state machine draws random operations and random schedules. The stress
test runs the same machine on free-running threads; it is marked ``stress`` and left out of the
deterministic gate (``-m "not stress"``). The bounded-state check serves runs one call at a
time and measures what the broker keeps of them (``stateful.boundedstate``).
"""

import pytest

from stateful import config
from stateful.boundedstate import check_bounded_state
from stateful.machine import RunBrokerMachine, machine_for
from stateful.runner import run_machine
from stateful.scenarios import SCENARIOS, Scenario, explore_scenario

pytestmark = pytest.mark.stateful


def test_stateful_bounded_state() -> None:
    check_bounded_state(config.load_impl().spec)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.test_id)
def test_stateful_small_scope_race(scenario: Scenario) -> None:
    impl = config.load_impl()
    if not scenario.applies_to(impl):
        pytest.skip(f"{impl.spec} has no replay")
    explore_scenario(scenario, impl.spec)


def test_stateful_run_broker(stateful_seed: int | None) -> None:
    run_machine(RunBrokerMachine, seed=stateful_seed)


@pytest.mark.stress
def test_stateful_stress_free_running(stateful_seed: int | None) -> None:
    machine = machine_for(config.load_impl().spec, free_running=True)
    run_machine(machine, seed=stateful_seed)
