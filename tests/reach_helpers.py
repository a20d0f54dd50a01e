"""A helper module the reach tests' brokers use, not traced: its primitives are real at import.

An import-time lock, the real constructor bound by ``from threading import Lock``, and a dataclass
whose lock comes from ``field(default_factory=threading.Lock)``; and, through
``tests.reach_deep``, the same kinds from a module the brokers never name.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from threading import Lock as RealLock
from typing import Any

from tests import reach_deep

LOCK = threading.Lock()


def make_lock() -> Any:
    """A lock made here, by the constructor bound at import."""
    return RealLock()


@dataclass
class Guarded:
    """A lock and what it guards."""

    lock: Any = field(default_factory=threading.Lock)
    count: int = 0


def deep_lock() -> Any:
    return reach_deep.LOCK


def new_run_state() -> reach_deep.RunState:
    return reach_deep.RunState()
