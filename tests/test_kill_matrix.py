"""The kill matrix: the state machine fails every mutant of the zoo with the invariant its
docstring names, and passes every correct broker at the ``ci`` profile.

The ``ci`` profile is derandomized, so each verdict is the same on every run of the same code.
Each entry is measured in a process of its own (``python -m stateful.killmatrix --verdict``):
Hypothesis seeds part of its generation with constants of the modules loaded in the process,
so measured here, a verdict would change with whatever else the test session imported. A
broker, correct or not, gets the profile's examples (the search stops at its first failure).
Shrinking is left to ``python -m stateful.killmatrix``, which also prints the table.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stateful.killmatrix import Outcome, unexpected
from tests.mutants import ZooEntry, zoo

ROOT = Path(__file__).resolve().parents[1]
# Far above the slowest entry (a survivor spends all the profile's examples), far below the
# backstop.
TIMEOUT_SECONDS = 600


def verdict(impl: str) -> Outcome:
    """Measure ``impl`` at the ``ci`` profile in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-m", "stateful.killmatrix", "--profile", "ci", "--verdict", impl],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, f"the kill matrix could not measure {impl}:\n{done.stderr}"
    return Outcome(**json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize("entry", zoo(), ids=lambda entry: entry.impl.rpartition(".")[2])
def test_kill_matrix(entry: ZooEntry) -> None:
    problem = unexpected(entry, verdict(entry.impl))
    assert problem is None, f"{entry.impl} ({entry.defect}): {problem}"
