"""The broker machine against ``RedisRunBroker`` on a real server, free-running, with Redis's
faults (connections killed, the server restarted) as operations: ``stateful.redis_machine``.

Free-running, so marked ``stress`` and never part of the deterministic gate (and, being
outside ``stateful/`` and without ``stateful`` in its name, not selected by ``-k stateful``);
plain ``pytest`` and CI run it. A correct broker passes it whatever the interleaving. On a
failure the steps of the first failing example are attached, even when Hypothesis cannot make
it fail again. ``--broker-impl`` naming a ``RedisRunBroker`` subclass is tested instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from broker.redis import URL_ENV
from stateful.redis_machine import RedisFaultMachine, redis_machine
from stateful.runner import run_machine
from tests.redis_support import RedisServer, running_redis

# A server start per restart fault: a sixteenth of the profile's examples (50 under ci).
EXAMPLES_SHARE = 16


@pytest.fixture
def fault_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    with running_redis() as server:
        monkeypatch.setenv(URL_ENV, server.url)
        yield server


@pytest.mark.stress
def test_redis_machine_free_running_with_faults(
    fault_server: RedisServer, stateful_seed: int | None
) -> None:
    machine = redis_machine()
    machine.server = fault_server
    RedisFaultMachine.first_failure = None
    examples = max(10, settings().max_examples // EXAMPLES_SHARE)
    try:
        run_machine(
            machine, settings=settings(settings(), max_examples=examples), seed=stateful_seed
        )
    except BaseException as error:
        if RedisFaultMachine.first_failure is not None:
            error.add_note(f"The first failing example:\n{RedisFaultMachine.first_failure}")
        raise
