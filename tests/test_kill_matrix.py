"""The kill matrix: the suite fails every mutant of the zoo with the invariant its docstring
names, and passes every correct broker, at the ``ci`` profile.

The suite is the state machine and the small-scope races. The ``ci`` profile is derandomized,
and the small-scope races draw nothing, so each verdict is the same on every run of the same
code. The state machine is measured in a process of its own per entry (``python -m
stateful.killmatrix --verdict``): Hypothesis seeds part of its generation with constants of the
modules loaded in the process, so measured here, a verdict would change with whatever else the
test session imported. A broker, correct or not, gets the profile's examples (the search stops
at its first failure). The small-scope races run for every correct broker, and for a mutant the
state machine did not kill. Shrinking is left to ``python -m stateful.killmatrix``, which also
prints the table.
"""

from pathlib import Path

import pytest

from stateful.killmatrix import measure_in_new_process, measure_small_scope, unexpected
from tests.mutants import ZooEntry, zoo

ROOT = Path(__file__).resolve().parents[1]
# Far above the slowest entry (a survivor spends all the profile's examples), far below the
# backstop.
TIMEOUT_SECONDS = 600


@pytest.mark.parametrize("entry", zoo(), ids=lambda entry: entry.impl.rpartition(".")[2])
def test_kill_matrix(entry: ZooEntry) -> None:
    outcomes = [measure_in_new_process(entry.impl, "ci", cwd=ROOT, timeout=TIMEOUT_SECONDS)]
    if entry.correct or not outcomes[0].killed:
        outcomes.append(measure_small_scope(entry.impl, entry.trace_modules))
    problem = unexpected(entry, *outcomes)
    assert problem is None, f"{entry.impl} ({entry.defect}): {problem}"
