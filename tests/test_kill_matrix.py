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
not kill. The entries are judged two at a time, one per core, in the order of the tests, as
soon as the module's first test starts; each test waits for its own. Shrinking is left to
``python -m stateful.killmatrix``, which also prints the table.
"""

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from stateful.killmatrix import Outcome, measure_in_new_process, unexpected
from tests.mutants import ZooEntry, zoo

ROOT = Path(__file__).resolve().parents[1]
# Far above the slowest entry (a survivor spends all the profile's examples), far below the
# backstop.
TIMEOUT_SECONDS = 600


def judge(entry: ZooEntry) -> str | None:
    """Why the suite's verdict on ``entry`` is not the expected one, or None."""

    def measure(small_scope: bool) -> Outcome:
        return measure_in_new_process(
            entry.impl, "ci", small_scope=small_scope, cwd=ROOT, timeout=TIMEOUT_SECONDS
        )

    outcomes = [measure(small_scope=False)]
    if entry.correct or not outcomes[0].killed:
        outcomes.append(measure(small_scope=True))
    return unexpected(entry, *outcomes)


@pytest.fixture(scope="module")
def verdicts(request: pytest.FixtureRequest) -> Iterator[dict[str, Future[str | None]]]:
    """Every selected entry's verdict, judged in the background, two at a time."""
    selected = {
        item.callspec.id
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.module is request.module
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {
            entry.impl: pool.submit(judge, entry) for entry in zoo() if entry_id(entry) in selected
        }
        pool.shutdown(cancel_futures=True)


def entry_id(entry: ZooEntry) -> str:
    return entry.impl.rpartition(".")[2]


@pytest.mark.parametrize("entry", zoo(), ids=entry_id)
def test_kill_matrix(entry: ZooEntry, verdicts: dict[str, Future[str | None]]) -> None:
    problem = verdicts[entry.impl].result()
    assert problem is None, f"{entry.impl} ({entry.defect}): {problem}"
