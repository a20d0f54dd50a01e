"""The kill matrix: the suite fails every mutant of the zoo with the invariant its docstring
names, and passes every correct broker, at the ``ci`` profile.

The suite is the state machine and the small-scope races. The ``ci`` profile is derandomized,
and the small-scope races draw nothing, so each verdict is the same on every run of the same
code. The state machine is measured in a process of its own per entry (``python -m
stateful.killmatrix --verdict``): Hypothesis seeds part of its generation with constants of the
modules loaded in the process, so measured here, a verdict would change with whatever else the
test session imported; the small-scope races, which draw nothing, run in a process of their own
too, so that for a correct broker, which must pass both parts, they run beside the machine on
the second core. A broker, correct or not, gets the profile's examples (the search stops at its
first failure). A mutant the state machine did not kill gets the small-scope races. Shrinking is
left to ``python -m stateful.killmatrix``, which also prints the table.
"""

import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stateful.killmatrix import measure_in_new_process, unexpected
from tests.mutants import ZooEntry, zoo

ROOT = Path(__file__).resolve().parents[1]
# Far above the slowest entry (a survivor spends all the profile's examples), far below the
# backstop.
TIMEOUT_SECONDS = 600


@pytest.mark.parametrize("entry", zoo(), ids=lambda entry: entry.impl.rpartition(".")[2])
def test_kill_matrix(entry: ZooEntry) -> None:
    measure = functools.partial(
        measure_in_new_process, entry.impl, "ci", cwd=ROOT, timeout=TIMEOUT_SECONDS
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        machine = pool.submit(measure)
        small_scope = pool.submit(measure, small_scope=True) if entry.correct else None
        outcomes = [machine.result()]
        if small_scope is not None:
            outcomes.append(small_scope.result())
        elif not outcomes[0].killed:
            outcomes.append(measure(small_scope=True))
    problem = unexpected(entry, *outcomes)
    assert problem is None, f"{entry.impl} ({entry.defect}): {problem}"
