"""Fixtures shared by the test modules: the real ``redis-server`` (``tests.redis_support``)."""

from tests.redis_support import redis_broker, redis_server

__all__ = ["redis_broker", "redis_server"]
