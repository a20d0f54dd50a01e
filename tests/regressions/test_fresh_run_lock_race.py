"""Regression: the suite's own checks kept every run from being fresh, hiding lazy-state races.

After every settle the machine asked the broker ``n_subscribers`` and ``is_done`` for every run
in its pool, including runs no rule had used yet. A broker that creates per-run state lazily
(``tests.mutants.mutant_run_lock_created_twice``: a per-run lock made on first use, without the
registry lock) made that state during the check, so no race ever ran on a fresh run and the
mutant's two-locks race was never reached. The checks now skip runs nobody has touched.

The steps below race subscribe and close on the first run, whose lock neither has made yet:
subscribe finds no lock, close finds none, subscribe makes and takes its own and finds the run
open, close makes and takes another, closes the run and finds nobody to send done to, and
subscribe registers a subscriber that never gets done.
"""

import pytest

from stateful.errors import ScheduleFailure
from stateful.impl import DEFAULT_IMPL
from stateful.regression import (
    Close,
    PreemptionSchedule,
    Replay,
    RunInterleaved,
    Subscribe,
    replay_steps,
)

FOUND_IN = "tests.mutants.mutant_run_lock_created_twice:RunLockCreatedTwiceBroker"


def steps(state: Replay) -> None:
    state.step(op=Subscribe(slot=0))
    state.step(op=Close(producer=0, slot=0))
    state.step(
        op=RunInterleaved(
            # Creating a lock is a switch point, so close (first=1) can be preempted between
            # finding no lock and storing the one it made: three preemptions at
            # synchronisation points reach the race.
            schedule=PreemptionSchedule(
                first=1, preemptions=((0, 0, True), (3, 0, True), (1, 0, True))
            )
        )
    )


def test_two_lazily_made_locks_let_close_miss_a_subscriber() -> None:
    with pytest.raises(ScheduleFailure, match=r"^\[no-hang-after-done\]"):
        replay_steps(steps, FOUND_IN)
    replay_steps(steps, DEFAULT_IMPL)
