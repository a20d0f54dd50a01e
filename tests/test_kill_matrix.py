"""The kill matrix: the state machine, at the ``ci`` profile, fails every mutant of the zoo with
the invariant its docstring names, and passes every correct broker.

The ``ci`` profile is derandomized, so each verdict is the same on every run of the same code.
Shrinking is left to ``python -m stateful.killmatrix``, which also prints the table; here only
the verdict and the invariant matter.
"""

import pytest
from hypothesis import settings

from stateful.killmatrix import measure
from tests.mutants import ZooEntry, zoo

CI = settings.get_profile("ci")


@pytest.mark.parametrize("entry", zoo(), ids=lambda entry: entry.impl.rpartition(".")[2])
def test_kill_matrix(entry: ZooEntry) -> None:
    outcome = measure(entry.impl, CI, shrink=False, trace_modules=entry.trace_modules)
    if entry.correct:
        assert not outcome.killed, f"false alarm on a correct broker:\n{outcome.message}"
        return
    assert outcome.killed, f"{entry.impl} survived {outcome.examples} examples: {entry.defect}"
    allowed = (entry.invariant, *entry.also)
    assert outcome.invariant in allowed, (
        f"{entry.impl} was killed by {outcome.invariant}, expected one of {allowed}:\n"
        f"{outcome.message}"
    )
