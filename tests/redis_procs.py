"""The processes of the cross-process tests: ``python -m tests.redis_procs produce|subscribe``.

``produce URL NAMESPACE RUN PRODUCER COUNT``: emit ``COUNT`` events ``{"p": PRODUCER, "n": i}``
to ``RUN``, then exit. ``subscribe URL NAMESPACE RUN [LAST_EVENT_ID]``: subscribe, print
``subscribed`` once ``subscribe`` has returned, then print every item as one JSON line until
the terminal one, then exit.
"""

from __future__ import annotations

import asyncio
import json
import sys

from broker.events import is_terminal
from broker.redis import RedisRunBroker


def produce(url: str, namespace: str, run: str, producer: int, count: int) -> None:
    broker = RedisRunBroker(url, namespace=namespace)
    for n in range(count):
        broker.emit(run, {"p": producer, "n": n})


async def subscribe(url: str, namespace: str, run: str, last_event_id: int | None) -> None:
    broker = RedisRunBroker(url, namespace=namespace)
    try:
        async with broker.subscription(run, last_event_id) as items:
            print("subscribed", flush=True)
            async for item in items:
                print(json.dumps(item), flush=True)
                if is_terminal(item):
                    break
    finally:
        await broker.aclose()


def main(argv: list[str]) -> None:
    command, url, namespace, run, *rest = argv
    if command == "produce":
        produce(url, namespace, run, int(rest[0]), int(rest[1]))
    else:
        asyncio.run(subscribe(url, namespace, run, int(rest[0]) if rest else None))


if __name__ == "__main__":
    main(sys.argv[1:])
