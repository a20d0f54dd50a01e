"""Fixtures shared by the test modules: the real ``redis-server`` (``tests.redis_support``); and
the kill matrix's verdicts, judged in the background from the end of collection while the other
tests run, the kill-matrix tests last (``tests.killmatrix_verdicts``)."""

import pytest

from tests import killmatrix_verdicts
from tests.redis_support import redis_broker, redis_server

__all__ = ["redis_broker", "redis_server"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    killmatrix_verdicts.run_last(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    killmatrix_verdicts.start(session)


def pytest_sessionfinish(session: pytest.Session) -> None:
    killmatrix_verdicts.stop(session)
