"""The Redis backend across processes: producers in two processes, subscribers in a third,
the contract checked end to end on what the subscriber process printed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from broker.redis import RedisRunBroker
from tests.redis_support import RedisServer

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 300
TIMEOUT = 60


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.redis_procs", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def items_of(subscriber: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, _ = subscriber.communicate(timeout=TIMEOUT)
    assert subscriber.returncode == 0
    return [json.loads(line) for line in out.splitlines()]


def check_stream(items: list[dict[str, Any]], first_id: int) -> None:
    """Ids run on from ``first_id`` without a hole, each producer's events in emit order,
    ``done`` last and once."""
    assert items[-1] == {"type": "done"}
    events = items[:-1]
    assert [event["id"] for event in events] == list(range(first_id, first_id + len(events)))
    for producer in (0, 1):
        seqs = [event["n"] for event in events if event["p"] == producer]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_two_producer_processes_and_a_subscriber_process(redis_server: RedisServer) -> None:
    namespace, run = f"procs-{uuid.uuid4().hex}", "run"
    live = start("subscribe", redis_server.url, namespace, run)
    assert live.stdout is not None
    assert live.stdout.readline() == "subscribed\n"
    producers = [
        start("produce", redis_server.url, namespace, run, str(p), str(EVENTS)) for p in (0, 1)
    ]
    for producer in producers:
        assert producer.wait(timeout=TIMEOUT) == 0
    # Resuming mid-run, from a third process too.
    resumed = start("subscribe", redis_server.url, namespace, run, "100")
    assert resumed.stdout is not None
    assert resumed.stdout.readline() == "subscribed\n"
    closer = RedisRunBroker(redis_server.url, namespace=namespace)
    closer.close(run)
    asyncio.run(closer.aclose())

    items = items_of(live)
    # Subscribed before any emit: every event of both producers, in one order.
    check_stream(items, 1)
    assert len(items) == 2 * EVENTS + 1
    resumed_items = items_of(resumed)
    check_stream(resumed_items, 101)
    assert resumed_items == items[100:]
