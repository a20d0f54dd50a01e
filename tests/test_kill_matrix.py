"""The kill matrix: the state machine fails every mutant of the zoo with the invariant its
docstring names, and passes every correct broker at the ``ci`` profile.

The ``ci`` profile is derandomized, so each verdict is the same on every run of the same code. A
correct broker gets the profile's examples; a mutant up to ``KILL_BUDGET`` (the search stops at
its first failure). A mutant whose docstring has a ``Known miss:`` line is a defect the suite
does not find yet: a strict expected failure, so the day the suite finds it, this test says so.
Shrinking is left to ``python -m stateful.killmatrix``, which also prints the table.
"""

import pytest
from hypothesis import settings

from stateful.killmatrix import budget, measure
from tests.mutants import ZooEntry, zoo

CI = settings.get_profile("ci")


def _param(entry: ZooEntry) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=entry.known_miss)] if entry.known_miss else []
    return pytest.param(entry, id=entry.impl.rpartition(".")[2], marks=marks)


@pytest.mark.parametrize("entry", [_param(entry) for entry in zoo()])
def test_kill_matrix(entry: ZooEntry) -> None:
    outcome = measure(
        entry.impl,
        budget(CI, correct=entry.correct),
        shrink=False,
        trace_modules=entry.trace_modules,
    )
    if entry.correct:
        assert not outcome.killed, f"false alarm on a correct broker:\n{outcome.message}"
        return
    assert outcome.killed, f"{entry.impl} survived {outcome.examples} examples: {entry.defect}"
    allowed = (entry.invariant, *entry.also)
    assert outcome.invariant in allowed, (
        f"{entry.impl} was killed by {outcome.invariant}, expected one of {allowed}:\n"
        f"{outcome.message}"
    )
