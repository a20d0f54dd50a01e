"""Run the demo server: ``python -m broker.demo [--host 127.0.0.1] [--port 8000]``."""

from __future__ import annotations

import argparse

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
        "--port", type=int, default=8000, help="port to bind (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"runbroker demo: open http://{host}:{args.port}/")
    # Open streams would otherwise hold Ctrl-C until their runs end; after this many seconds they
    # are cancelled, which releases their subscriptions.
    uvicorn.run(create_app(), host=args.host, port=args.port, timeout_graceful_shutdown=3)


if __name__ == "__main__":
    main()
