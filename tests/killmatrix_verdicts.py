"""The kill matrix's verdicts, judged in the background from the moment collection ends.

Each verdict takes a process of its own and most of a core for up to a few minutes, and the
kill-matrix tests would otherwise start them only when the first of them runs, leaving a core
idle through every test before. ``run_last`` (called by ``pytest_collection_modifyitems``) moves
the kill-matrix tests after every other test, and ``start`` (``pytest_collection_finish``)
submits every selected entry of ``tests/test_kill_matrix.py``, two at a time (one per core), in
the order of the tests; so the verdicts are judged while the rest of the session runs, and each
kill-matrix test then waits for its own. ``stop`` (``pytest_sessionfinish``) cancels what has
not started. The verdicts do not depend on what else runs meanwhile: each is measured
in a new interpreter under the derandomized ``ci`` profile.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeGuard

import pytest

from stateful.killmatrix import Outcome, measure_in_new_process, unexpected
from tests.mutants import ZooEntry, zoo

ROOT = Path(__file__).resolve().parents[1]
# Far above the slowest entry (a survivor spends all the profile's examples), far below the
# backstop.
TIMEOUT_SECONDS = 600
KILL_MATRIX = ROOT / "tests" / "test_kill_matrix.py"


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


def entry_id(entry: ZooEntry) -> str:
    return entry.impl.rpartition(".")[2]


class Verdicts:
    """The selected entries' verdicts, being judged."""

    def __init__(self, entries: list[ZooEntry]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kill-matrix")
        self._futures = {entry.impl: self._pool.submit(judge, entry) for entry in entries}

    def problem(self, entry: ZooEntry) -> str | None:
        """Wait for ``entry``'s verdict: why it is not the expected one, or None."""
        return self._futures[entry.impl].result()

    def stop(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


_KEY = pytest.StashKey[Verdicts]()


def _is_kill_matrix(item: pytest.Item) -> TypeGuard[pytest.Function]:
    return isinstance(item, pytest.Function) and Path(item.path) == KILL_MATRIX


def run_last(items: list[pytest.Item]) -> None:
    """Move the kill-matrix tests after the others, keeping each group's order."""
    items[:] = sorted(items, key=_is_kill_matrix)


def start(session: pytest.Session) -> None:
    """Start judging the kill-matrix entries that the session selected, if any."""
    if session.config.option.collectonly:
        return
    selected = {item.callspec.id for item in session.items if _is_kill_matrix(item)}
    entries = [entry for entry in zoo() if entry_id(entry) in selected]
    if entries:
        session.stash[_KEY] = Verdicts(entries)


def of(session: pytest.Session) -> Verdicts:
    """The session's verdicts; ``start`` made them when collection ended."""
    return session.stash[_KEY]


def stop(session: pytest.Session) -> None:
    verdicts = session.stash.get(_KEY, None)
    if verdicts is not None:
        verdicts.stop()
