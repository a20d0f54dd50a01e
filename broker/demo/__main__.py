"""Run the demo server: ``python -m broker.demo [--host 127.0.0.1] [--port 8000]``.

It prints the page's address (with the real port, also for ``--port 0``) once it is listening.
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
    args = parser.parse_args(argv)
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
    # Open streams would otherwise hold Ctrl-C until their runs end; after this many seconds they
    # are cancelled, which releases their subscriptions.
    config = uvicorn.Config(create_app(), timeout_graceful_shutdown=3)
    # uvicorn shuts down cleanly on Ctrl-C, then re-raises it.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
