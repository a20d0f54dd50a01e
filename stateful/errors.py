"""The failures the deterministic scheduler reports.

Every failure the suite raises is an ``AssertionError`` subclass, so Hypothesis shrinks it like any
other failed assertion, and each carries a short machine-readable ``invariant`` name (the kill
matrix asserts on it) next to a message a person can act on.

``SchedulerAbort`` is different: it is raised *inside* managed threads to unwind them when an
example ends early, and derives from ``BaseException`` so that ``except Exception`` in the code
under test cannot swallow it.
"""

from __future__ import annotations


class ScheduleFailure(AssertionError):
    """A broken invariant or a scheduling failure; ``invariant`` names which one."""

    invariant: str = "scheduler"

    def __init__(self, message: str, *, invariant: str | None = None) -> None:
        if invariant is not None:
            self.invariant = invariant
        super().__init__(f"[{self.invariant}] {message}")


class InvariantViolation(ScheduleFailure):
    """The implementation under test broke one of the broker's invariants."""


class Deadlock(ScheduleFailure):
    """Every thread with work left is blocked on a controlled primitive."""

    invariant = "deadlock"


class WatchdogTimeout(ScheduleFailure):
    """A thread did not reach its next switch point in time: it blocked outside our control."""

    invariant = "watchdog"


class UncontrolledPrimitive(ScheduleFailure):
    """The broker holds a real ``threading`` primitive the scheduler could not replace: a thread
    blocked on it would block for real, out of the scheduler's sight."""

    invariant = "uncontrolled-primitive"


class Livelock(ScheduleFailure):
    """The threads kept running past the step budget without settling."""

    invariant = "livelock"


class Nondeterminism(ScheduleFailure):
    """The same choices produced a different execution: something the scheduler does not
    control (address-based hashing, clocks, randomness, an uncontrolled thread) leaked in."""

    invariant = "nondeterminism"


class SchedulerAbort(BaseException):
    """Unwinds a managed thread whose example is over."""
