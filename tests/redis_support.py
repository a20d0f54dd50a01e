"""A real ``redis-server`` for tests: started on a free loopback port in a temporary directory,
stopped afterwards; no mocks.

``RedisServer`` starts Debian's ``/usr/bin/redis-server`` (or the one on ``PATH``) with
``--bind 127.0.0.1``, ``--dir`` a temporary directory, ``--save ''`` and ``--appendonly yes``
(``appendfsync always``, so a restart keeps every write that was acknowledged), and returns
once the server answers ``PING`` (polled against a deadline). ``restart()`` shuts it down and
starts it again on the same port and directory; ``kill_clients(name)`` kills the connections
with that ``CLIENT SETNAME``. Without ``redis-server`` the fixtures skip with the reason; CI
installs it (``.ci/run``), so there they run.

Fixtures: ``redis_server`` (one server per test module) and ``redis_broker`` (a factory of
``RedisRunBroker`` instances on it, each in its own namespace, closed after the test).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

START_TIMEOUT = 10.0


def redis_server_binary() -> str | None:
    if os.access("/usr/bin/redis-server", os.X_OK):
        return "/usr/bin/redis-server"
    return shutil.which("redis-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; see the module docstring."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--protected-mode",
                "yes",
                "--logfile",
                str(self.log),
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        client = self.client()
        try:
            while True:
                if self.process.poll() is not None:
                    log = self.log.read_text() if self.log.exists() else ""
                    status = self.process.returncode
                    raise RuntimeError(f"redis-server exited with {status}:\n{log}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not answer PING")
                time.sleep(0.005)  # polling the deadline above, not standing in for sync
        finally:
            client.close()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        # SIGTERM is Redis's clean shutdown: the AOF is fsynced before it exits.
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Shut down (the AOF keeps every acknowledged write) and start again, same port."""
        self.stop()
        self.start()

    def kill_clients(self, name: str) -> int:
        """Kill every connection whose client name is ``name``; how many were killed."""
        client = self.client()
        try:
            killed = 0
            for info in client.client_list():
                if info.get("name") == name:
                    with contextlib.suppress(redis.ResponseError):
                        killed += int(client.client_kill_filter(_id=info["id"]))
            return killed
        finally:
            client.close()

    def clients_named(self, name: str) -> int:
        client = self.client()
        try:
            return sum(info.get("name") == name for info in client.client_list())
        finally:
            client.close()


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); CI installs it")
    with tempfile.TemporaryDirectory(prefix="runbroker-redis-") as directory:
        server = RedisServer(binary, Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


BrokerFactory = Callable[..., Any]


@pytest_asyncio.fixture
async def redis_broker(redis_server: RedisServer) -> AsyncIterator[BrokerFactory]:
    """``make(**kwargs)``: a ``RedisRunBroker`` on the module's server, closed after the test."""
    from broker.redis import RedisRunBroker

    made: list[RedisRunBroker] = []

    def make(**kwargs: Any) -> RedisRunBroker:
        kwargs.setdefault("url", redis_server.url)
        broker = RedisRunBroker(**kwargs)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.aclose()
