"""The stateful suite: ``RunBrokerMachine`` against the configured broker.

``pytest stateful/ --broker-impl=module:Class`` runs it against any broker class; the default
is the package's own ``broker:RunBroker``. The stress test runs the same machine on free-running
threads; it is marked ``stress`` and left out of the deterministic gate (``-m "not stress"``).
"""

import pytest

from stateful import config
from stateful.machine import RunBrokerMachine, machine_for
from stateful.runner import run_machine

pytestmark = pytest.mark.stateful


def test_stateful_run_broker(stateful_seed: int | None) -> None:
    run_machine(RunBrokerMachine, seed=stateful_seed)


@pytest.mark.stress
def test_stateful_stress_free_running(stateful_seed: int | None) -> None:
    machine = machine_for(config.load_impl().spec, free_running=True)
    run_machine(machine, seed=stateful_seed)
