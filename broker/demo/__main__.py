"""Run the demo server: ``python -m broker.demo [--host 127.0.0.1] [--port 8000] [--redis URL]``.

It prints the page's address (with the real port, also for ``--port 0``) once it is listening.
With ``--redis URL`` the runs go through a ``RedisRunBroker`` on that server (the ``redis``
extra) instead of the in-process ``RunBroker``.
"""

from __future__ import annotations

import argparse
import contextlib
import socket

import uvicorn

from broker.demo.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m broker.demo", description="Stream simulated agent runs to a browser page."
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8000,
        help="port to bind, 0 for any free one (default: %(default)s)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="keep the runs in Redis Streams at URL, e.g. redis://127.0.0.1:6379/0 "
        "(default: the in-process broker)",
    )
    parser.add_argument(
        "--redis-namespace",
        default="runbroker-demo",
        metavar="NAME",
        help="key prefix in Redis; processes that share runs use the same (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    broker = None
    if args.redis:
        from broker.redis import RedisRunBroker

        broker = RedisRunBroker(
            args.redis, namespace=args.redis_namespace, retain_closed_seconds=360.0
        )
    ipv6 = ":" in args.host
    # Binding here, not in uvicorn, lets the address printed below carry the real port.
    host = f"[{args.host}]" if ipv6 else args.host
    try:
        sock = socket.create_server(
            (args.host, args.port), family=socket.AF_INET6 if ipv6 else socket.AF_INET
        )
    except OSError as exc:
        parser.error(f"cannot listen on {host}:{args.port}: {exc.strerror or exc}")
    print(f"runbroker demo: open http://{host}:{sock.getsockname()[1]}/", flush=True)
    if args.redis:
        print(f"runbroker demo: runs kept in Redis at {args.redis}", flush=True)
    # Open streams would otherwise hold Ctrl-C until their runs end; after this many seconds they
    # are cancelled, which releases their subscriptions.
    config = uvicorn.Config(create_app(broker), timeout_graceful_shutdown=3)
    # uvicorn shuts down cleanly on Ctrl-C, then re-raises it.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
