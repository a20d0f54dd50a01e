"""A module the reach tests' brokers use only through ``tests.reach_helpers``: nothing rebinds it.

Its import-time lock and its dataclass's lock stay real unless it is traced.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

LOCK = threading.Lock()


@dataclass
class RunState:
    """One run's state, made lazily by a broker; its lock comes from the dataclass field."""

    lock: Any = field(default_factory=threading.Lock)
    events: int = 0
