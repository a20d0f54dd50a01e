"""Detects nondeterminism the scheduler does not control, by comparing replays.

Hypothesis runs the same choices more than once: while shrinking, and once more at the end to
show the minimal failing example. The ledger remembers a fingerprint of every settled
interleaving, keyed by everything that determined it (the implementation and every step of the
example so far). When the same key comes back with a different execution, the two runs
diverged although the scheduler made the same choices: the code under test depends on
something else (iteration order of sets of objects hashed by address, a clock, randomness, a
thread the scheduler does not run). The ledger records where; ``divergence_for`` turns a bare
Hypothesis ``Flaky`` into a report that names the step at which the two runs parted.

A divergence alone is not a failure (a correct broker may iterate a set in address order);
it only explains a failure that would not replay.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from stateful.trace import Entry, Mark, Step

MAX_REMEMBERED = 4096


def describe_entry(entry: Entry, thread_names: Sequence[str]) -> str:
    name = thread_names[entry.thread] if entry.thread < len(thread_names) else entry.thread
    if isinstance(entry, Step):
        return f"{name} at {entry.position.describe()}"
    assert isinstance(entry, Mark)
    return f"{name}: {entry.text}"


@dataclass(frozen=True)
class Divergence:
    """Where two executions of the same choices parted."""

    steps: str
    index: int
    before: str
    after: str

    def explain(self) -> str:
        return (
            f"The same example ran twice with the same scheduling choices and the executions "
            f"diverged at entry {self.index} of the interleaving after these steps:\n"
            f"{self.steps}\n"
            f"  first run:  {self.before}\n"
            f"  second run: {self.after}\n"
            f"Something the scheduler does not control decides what happens there: iteration "
            f"order of a set or dict of objects hashed by address, a clock, randomness, or a "
            f"thread the scheduler does not run."
        )


class ReplayLedger:
    """Bounded memory of interleavings seen, keyed by what determined them."""

    def __init__(self) -> None:
        # Entries are compared as values and described only when two executions differ.
        self._seen: OrderedDict[Hashable, tuple[Entry, ...]] = OrderedDict()
        self.last_divergence: Divergence | None = None

    def record(
        self, key: Hashable, steps: str, entries: Sequence[Entry], thread_names: Sequence[str]
    ) -> None:
        fingerprint = tuple(entries)
        previous = self._seen.get(key)
        if previous is None:
            self._seen[key] = fingerprint
            if len(self._seen) > MAX_REMEMBERED:
                self._seen.popitem(last=False)
            return
        self._seen.move_to_end(key)
        if previous == fingerprint:
            return
        index = next(
            (i for i, (a, b) in enumerate(zip(previous, fingerprint, strict=False)) if a != b),
            min(len(previous), len(fingerprint)),
        )
        self.last_divergence = Divergence(
            steps=steps,
            index=index,
            before=_described(previous, index, thread_names),
            after=_described(fingerprint, index, thread_names),
        )

    def reset(self) -> None:
        self._seen.clear()
        self.last_divergence = None


def _described(entries: Sequence[Entry], index: int, thread_names: Sequence[str]) -> str:
    if index >= len(entries):
        return "(the interleaving ended)"
    return describe_entry(entries[index], thread_names)


LEDGER = ReplayLedger()
"""One per process: a test's examples share it, and each test resets it when it starts."""
