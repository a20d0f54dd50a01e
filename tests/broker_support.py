"""Helpers for the broker's unit tests: a producer call on a real thread, one loop turn, a queue
read without waiting.

Interleavings are driven, not hoped for: ``in_thread`` runs a producer call on a thread that is
joined before the test goes on, and ``loop_step()`` lets the loop run the flush the broker
scheduled.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any


def drain(queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every item the queue holds now, without waiting for more."""
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def loop_step() -> None:
    """One loop turn: the callbacks already scheduled (the broker's flush) run first."""
    await asyncio.sleep(0)


def in_thread(function: Callable[..., object], *args: object) -> None:
    """Run ``function`` on a producer thread to completion; re-raise what escaped it."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            function(*args)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
