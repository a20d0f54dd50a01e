"""Failure reporting: the interleaving as a per-thread timeline a person can read.

Given a ``Trace`` and the thread names, ``timeline`` prints one column per thread and one row per
entry, oldest first. Consecutive lines a thread ran in one function collapse into a range
(``core.py:88-91 emit``), so a row is a *slice* of that thread's execution; marks (an operation
began or returned, a subscriber received an item) get a row of their own. Primitive operations
show what they did or waited for (``acquire <controlled Lock from core.py:40>``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from stateful.trace import Entry, Mark, Step, Trace

COLUMN = 44
MAX_ROWS = 400


@dataclass
class _Slice:
    thread: int
    text: str
    filename: str = ""
    function: str = ""
    first_line: int = 0
    last_line: int = 0

    def extends(self, step: Step) -> bool:
        position = step.position
        return (
            step.thread == self.thread
            and not position.note
            and position.lineno >= self.last_line
            and self.filename == position.filename
            and self.function == position.function
            and self.filename != ""
        )

    def render(self) -> str:
        if not self.filename:
            return self.text
        lines = (
            f"{self.first_line}"
            if self.first_line == self.last_line
            else f"{self.first_line}-{self.last_line}"
        )
        return f"{os.path.basename(self.filename)}:{lines} {self.function}"


def _slices(entries: Sequence[Entry]) -> list[_Slice]:
    rows: list[_Slice] = []
    for entry in entries:
        if isinstance(entry, Mark):
            rows.append(_Slice(entry.thread, entry.text))
            continue
        position = entry.position
        if rows and rows[-1].extends(entry):
            rows[-1].last_line = position.lineno
            continue
        if position.note or not position.filename:
            rows.append(_Slice(entry.thread, position.describe()))
        else:
            rows.append(
                _Slice(
                    entry.thread,
                    "",
                    position.filename,
                    position.function,
                    position.lineno,
                    position.lineno,
                )
            )
    return [row for row in rows if row.text not in ("idle", "loop idle")]


def _fit(text: str) -> str:
    return text if len(text) < COLUMN else text[: COLUMN - 2] + "…"


def timeline(trace: Trace, thread_names: Sequence[str], last_segments: int = 3) -> str:
    """The last ``last_segments`` interleavings of ``trace`` as a per-thread table."""
    out: list[str] = []
    header = "      " + "".join(name.ljust(COLUMN) for name in thread_names)
    segments = trace.segments[-last_segments:]
    if len(trace.segments) > len(segments):
        out.append(f"({len(trace.segments) - len(segments)} earlier interleavings not shown)")
    for number, (label, start) in enumerate(segments):
        following = segments[number + 1 :]
        end = following[0][1] if following else len(trace.entries)
        rows = _slices(trace.entries[start:end])
        out.append(f"--- {label}")
        out.append(header.rstrip())
        if len(rows) > MAX_ROWS:
            out.append(f"      ({len(rows) - MAX_ROWS} earlier rows not shown)")
            rows = rows[-MAX_ROWS:]
        for index, row in enumerate(rows, 1):
            cells = [""] * len(thread_names)
            cells[row.thread] = _fit(row.render())
            out.append(f"{index:>4}  " + "".join(cell.ljust(COLUMN) for cell in cells).rstrip())
    return "\n".join(out)
