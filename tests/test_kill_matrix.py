"""The kill matrix: the suite fails every mutant of the zoo with the invariant its docstring
names, and passes every correct broker, at the ``ci`` profile.

The suite is the state machine and the small-scope checks (the bounded-state check and the
small-scope races). The ``ci`` profile is derandomized, and the small-scope checks draw nothing,
so each verdict is the same on every run of the same code. Each part is measured in a process
of its own (``python -m stateful.killmatrix --verdict [--small-scope]``): Hypothesis seeds part
of its generation with constants of the modules loaded in the process, so measured here, a
verdict would change with whatever else the test session imported. A broker, correct or not,
gets the profile's examples (the search stops at its first failure); the small-scope checks run
for every correct broker, which must pass both parts, and for a mutant the state machine did
not kill. The entries are judged two at a time, one per core, in the order of the tests, from
the moment collection ends, while the other tests run (``tests/killmatrix_verdicts.py``); each
test waits for its own. Shrinking is left to ``python -m stateful.killmatrix``, which also
prints the table.
"""

import pytest

from tests import killmatrix_verdicts
from tests.killmatrix_verdicts import entry_id
from tests.mutants import ZooEntry, zoo


@pytest.mark.parametrize("entry", zoo(), ids=entry_id)
def test_kill_matrix(entry: ZooEntry, request: pytest.FixtureRequest) -> None:
    problem = killmatrix_verdicts.of(request.session).problem(entry)
    assert problem is None, f"{entry.impl} ({entry.defect}): {problem}"
