"""What the runtime records while it executes a schedule.

A ``Trace`` is a flat list of entries: a *step* (the strategy resumed a thread at a position, that
is, the line or primitive operation the thread is about to execute) or a *mark* (something a
thread did that a person reading a failure wants to see: an operation began or returned, a
subscriber received an item). The trace is pure data; ``stateful.report`` turns it into a
per-thread timeline and ``stateful.replay`` compares two traces of the same choices.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from dataclasses import dataclass
from types import FrameType


@dataclass(frozen=True, slots=True)
class Position:
    """Where a thread stands: a line of a file, and what it is about to do there."""

    filename: str
    lineno: int
    function: str
    note: str = ""
    sync: bool = False

    @staticmethod
    def idle() -> Position:
        return Position("", 0, "", "idle")

    @staticmethod
    def of_frame(frame: FrameType, note: str = "", sync: bool = False) -> Position:
        code = frame.f_code
        return Position(code.co_filename, frame.f_lineno, code.co_name, note, sync)

    @staticmethod
    def of_caller(traced_files: Collection[str], note: str, sync: bool = True) -> Position:
        """The innermost frame in a traced file; just the note when there is none (the loop
        thread between callbacks)."""
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            if os.path.normcase(frame.f_code.co_filename) in traced_files:
                return Position.of_frame(frame, note, sync)
            frame = frame.f_back
        return Position("", 0, "", note, sync)

    def describe(self) -> str:
        if not self.filename:
            return self.note or "?"
        where = f"{os.path.basename(self.filename)}:{self.lineno} in {self.function}"
        return f"{where} ({self.note})" if self.note else where


@dataclass(frozen=True, slots=True)
class Step:
    """The strategy resumed ``thread`` at ``position``."""

    thread: int
    position: Position


@dataclass(frozen=True, slots=True)
class Mark:
    """Something ``thread`` did, worth showing in a timeline."""

    thread: int
    text: str


Entry = Step | Mark


class Trace:
    """An append-only record of one example's execution, split into segments (one per
    ``run`` of the runtime) so a report can show where each rule's interleaving began."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.segments: list[tuple[str, int]] = []

    def begin_segment(self, label: str) -> None:
        self.segments.append((label, len(self.entries)))

    def step(self, thread: int, position: Position) -> None:
        self.entries.append(Step(thread, position))

    def mark(self, thread: int, text: str) -> None:
        self.entries.append(Mark(thread, text))

    def since(self, start: int) -> list[Entry]:
        return self.entries[start:]

    def __len__(self) -> int:
        return len(self.entries)
