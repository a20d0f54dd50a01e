"""One named regression test per defect of the original design (the broker's first version).

Each test runs against ``RunBroker`` and against the original design (``bench/original.py``),
where it is expected to fail (strict xfail): that is the proof it catches the defect it names.
They use only the seed API, plus ``last_event_id`` for the reconnect test.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from broker import RunBroker
from tests.broker_support import drain, in_thread, loop_step


def _load_original() -> type[Any]:
    # By path: bench/ is not an installed package.
    path = Path(__file__).resolve().parents[1] / "bench" / "original.py"
    spec = importlib.util.spec_from_file_location("_original_broker", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.OriginalBroker  # type: ignore[no-any-return]


IMPLEMENTATIONS = pytest.mark.parametrize(
    "make",
    [
        pytest.param(RunBroker, id="RunBroker"),
        pytest.param(
            _load_original(),
            id="original",
            marks=pytest.mark.xfail(strict=True, reason="the original design has this defect"),
        ),
    ],
)


def count_wakeups(loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count ``loop.call_soon_threadsafe`` calls (in the returned one-element list)."""
    count = [0]
    real = loop.call_soon_threadsafe

    def counting(callback: Callable[..., object], *args: Any, **kwargs: Any) -> asyncio.Handle:
        count[0] += 1
        return real(callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    return count


@IMPLEMENTATIONS
@pytest.mark.asyncio
async def test_regression_subscribe_racing_close_gets_done(
    make: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The interleaving, forced: the closer thread is held inside close() at its loop wake-up
    # (after it scheduled done for the subscribers it knew), and a new subscriber arrives then.
    loop = asyncio.get_running_loop()
    broker = make()
    early = broker.subscribe("run")
    real = loop.call_soon_threadsafe
    inside_close = threading.Event()
    resume_close = threading.Event()

    def held(callback: Callable[..., object], *args: Any, **kwargs: Any) -> asyncio.Handle:
        handle = real(callback, *args, **kwargs)
        if threading.current_thread() is closer:
            inside_close.set()
            resume_close.wait()
        return handle

    monkeypatch.setattr(loop, "call_soon_threadsafe", held)
    closer = threading.Thread(target=broker.close, args=("run",))
    closer.start()
    inside_close.wait()
    late = broker.subscribe("run")
    resume_close.set()
    closer.join()
    await loop_step()
    await loop_step()
    assert drain(early) == [{"type": "done"}]
    assert drain(late) == [{"type": "done"}]


@IMPLEMENTATIONS
@pytest.mark.asyncio
async def test_regression_emit_after_close_is_not_delivered_after_done(
    make: Callable[[], Any],
) -> None:
    broker = make()
    queue = broker.subscribe("run")
    in_thread(broker.close, "run")
    in_thread(broker.emit, "run", {"late": True})
    await loop_step()
    assert drain(queue) == [{"type": "done"}]


@IMPLEMENTATIONS
@pytest.mark.asyncio
async def test_regression_second_close_sends_no_second_done(make: Callable[[], Any]) -> None:
    broker = make()
    queue = broker.subscribe("run")
    in_thread(broker.close, "run")
    in_thread(broker.close, "run")
    await loop_step()
    assert drain(queue) == [{"type": "done"}]


@IMPLEMENTATIONS
def test_regression_closed_runs_do_not_accumulate(make: Callable[[], Any]) -> None:
    broker = make()
    for index in range(1001):  # one more than RunBroker's default retain_closed_runs
        broker.emit(f"run-{index}", {"n": 1})
        broker.close(f"run-{index}")
    assert not broker.is_done("run-0")  # forgotten
    assert broker.is_done("run-1000")


@IMPLEMENTATIONS
def test_regression_emit_after_the_loop_closed_does_not_raise_in_the_producer(
    make: Callable[[], Any],
) -> None:
    loop = asyncio.new_event_loop()
    broker = make()
    broker.bind_loop(loop)
    broker.subscribe("run")
    loop.close()
    in_thread(broker.emit, "run", {"n": 1})  # re-raises anything that escaped
    in_thread(broker.close, "run")


@IMPLEMENTATIONS
@pytest.mark.asyncio
async def test_regression_one_loop_wakeup_per_batch_not_per_event_per_subscriber(
    make: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = make()
    queues = [broker.subscribe("run") for _ in range(10)]
    wakeups = count_wakeups(asyncio.get_running_loop(), monkeypatch)

    def emit_batch() -> None:
        for n in range(100):
            broker.emit("run", {"n": n})

    in_thread(emit_batch)
    assert wakeups == [1]  # not 100 events x 10 subscribers
    await loop_step()
    assert [len(drain(queue)) for queue in queues] == [100] * 10


@IMPLEMENTATIONS
@pytest.mark.asyncio
async def test_regression_a_refreshed_page_gets_what_was_emitted_while_it_reconnected(
    make: Callable[[], Any],
) -> None:
    broker = make()
    page = broker.subscribe("run")
    in_thread(broker.emit, "run", {"n": 1})
    await loop_step()
    [seen] = drain(page)
    broker.unsubscribe("run", page)  # the refresh
    in_thread(broker.emit, "run", {"n": 2})
    in_thread(broker.emit, "run", {"n": 3})
    reloaded = broker.subscribe("run", last_event_id=seen["id"])
    in_thread(broker.emit, "run", {"n": 4})
    in_thread(broker.close, "run")
    await loop_step()
    assert [item.get("n") for item in drain(reloaded)] == [2, 3, 4, None]
