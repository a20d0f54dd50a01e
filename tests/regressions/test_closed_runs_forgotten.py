"""Regression: a broker remembered every run it ever closed, and the suite passed it.

The original design kept each closed run id in ``self._done`` for ever: a leak that no request
notices and that ends a long-lived server. The suite checked that empty subscriber sets are
removed, but nothing measured what a broker keeps as runs come and go, so a broker with that
leak beside an otherwise correct retention (``mutant_done_ids_kept``) passed every check. The
bounded-state check serves runs one call at a time and finds the ids it keeps.
"""

import pytest

from stateful.boundedstate import check_bounded_state
from stateful.errors import ScheduleFailure
from stateful.impl import DEFAULT_IMPL

FOUND_IN = "tests.mutants.mutant_done_ids_kept:DoneIdsKeptBroker"


def test_a_broker_that_never_forgets_a_closed_run_fails() -> None:
    with pytest.raises(ScheduleFailure, match=r"^\[bounded-state\] .* broker\._done_ids holds"):
        check_bounded_state(FOUND_IN)
    check_bounded_state(DEFAULT_IMPL)
