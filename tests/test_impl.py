"""What the suite detects of a broker class, and what it builds it with (``stateful.impl``)."""

from __future__ import annotations

import pytest

from stateful.impl import SMALL_MAX_BACKLOG, SMALL_REPLAY_SIZE, load, standing_clock


def test_our_broker_gets_small_limits_and_a_clock_that_stands_still() -> None:
    impl = load("broker:RunBroker")
    assert impl.replay
    assert impl.kwargs == {
        "replay_size": SMALL_REPLAY_SIZE,
        "max_backlog": SMALL_MAX_BACKLOG,
        "clock": standing_clock,
    }
    broker = impl.new()
    assert broker._clock is standing_clock
    assert standing_clock() == standing_clock()


def test_a_seed_api_broker_is_built_with_no_arguments() -> None:
    impl = load("tests.mutants.correct_global_lock:GlobalLockBroker")
    assert not impl.replay
    assert impl.kwargs == {}
    assert impl.replay_size is None
    assert impl.max_backlog is None


def test_a_spec_that_is_not_module_colon_class_is_refused() -> None:
    with pytest.raises(ValueError, match="not of the form 'module:Class'"):
        load("broker.RunBroker")
    with pytest.raises(ValueError, match="has no attribute 'Nope'"):
        load("broker:Nope")
