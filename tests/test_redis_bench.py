"""``python -m bench fanout --backend redis`` runs (its quick sizes) and prints every row; no
timing is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.redis_support import redis_server_binary


def test_the_quick_redis_fanout_table_has_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); CI installs it")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    from bench import fanout_redis

    table = fanout_redis.main(quick=True)
    for backend in ("RunBroker, in process", "RedisRunBroker, across processes"):
        for subscribers in fanout_redis.SUBSCRIBERS:
            assert any(
                line.startswith(backend) and line.split()[-4] == str(subscribers)
                for line in table.splitlines()
            ), f"no row for {backend} with {subscribers} subscribers in:\n{table}"
