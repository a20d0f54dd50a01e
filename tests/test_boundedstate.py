"""The bounded-state check (``stateful.boundedstate``) against brokers whose retention is known.

Each broker of ``tests/boundedstate_targets.py`` keeps closed runs in another place or shape;
the check must pass the ones within their retention, name the container of the ones beyond it,
and tell a hang and an exception apart from a leak. The mutant zoo's leaking brokers are the
kill matrix's business; here are the check's pieces and its edges.
"""

from __future__ import annotations

import types
from collections import deque

import pytest

from stateful import config
from stateful.boundedstate import (
    BATCH,
    MAX_GROWTH_PER_RUN,
    SMALL_RETENTION,
    WARM_UP_PER_RETAINED_RUN,
    VirtualClock,
    check_bounded_state,
    measure_bounded_state,
    retained_run_ids,
    retention_for,
)
from stateful.errors import InvariantViolation
from stateful.invariants import check_memory_growth, check_retained_runs
from tests import boundedstate_targets as targets
from tests.mutants import CORRECT, entry

TARGETS = "tests.boundedstate_targets"


def test_a_broker_within_its_fixed_retention_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config.settings, "max_retained_runs", targets.FIXED_RETENTION)
    served = check_bounded_state(f"{TARGETS}:FixedRetentionBroker")
    assert served == WARM_UP_PER_RETAINED_RUN * targets.FIXED_RETENTION + 4 * BATCH


def test_a_broker_beyond_the_retention_bound_names_where_it_keeps_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(config.settings, "max_retained_runs", targets.FIXED_RETENTION - 1)
    with pytest.raises(InvariantViolation, match=r"^\[bounded-state\]") as failure:
        check_bounded_state(f"{TARGETS}:FixedRetentionBroker")
    message = str(failure.value)
    assert f"still keeps {targets.FIXED_RETENTION} of them" in message
    assert f"--max-retained-runs={targets.FIXED_RETENTION - 1}" in message
    assert f"broker._closed holds {targets.FIXED_RETENTION}" in message


def test_a_time_window_is_measured_on_the_virtual_clock() -> None:
    impl = config.load_impl(f"{TARGETS}:TimedRetentionBroker")
    clock = VirtualClock()
    retention = retention_for(impl, clock, max_retained_runs=0)
    assert retention.kwargs == {"retain_closed_seconds": float(SMALL_RETENTION), "clock": clock}
    assert retention.allowed == SMALL_RETENTION + 1
    # With the real clock every run would stay inside the window; the virtual one moves them out.
    check_bounded_state(impl.spec)


def test_our_broker_gets_a_small_count_and_the_virtual_clock() -> None:
    impl = config.load_impl("broker:RunBroker")
    clock = VirtualClock()
    retention = retention_for(impl, clock, max_retained_runs=0)
    assert retention.kwargs["retain_closed_runs"] == SMALL_RETENTION
    assert retention.kwargs["clock"] is clock
    assert retention.allowed == SMALL_RETENTION
    assert retention.described == f"retain_closed_runs={SMALL_RETENTION}"


def test_runs_kept_in_a_module_global_are_found() -> None:
    with pytest.raises(InvariantViolation, match=r"^\[bounded-state\]") as failure:
        check_bounded_state(f"{TARGETS}:GlobalLeakBroker")
    assert f"{TARGETS}.SERVED_RUNS holds" in str(failure.value)


def test_runs_kept_inside_tuples_are_found() -> None:
    with pytest.raises(InvariantViolation, match=r"^\[bounded-state\]") as failure:
        check_bounded_state(f"{TARGETS}:TupleLogBroker")
    assert "broker._log[…] holds" in str(failure.value)


def test_memory_kept_without_a_run_id_is_measured() -> None:
    with pytest.raises(InvariantViolation, match=r"^\[bounded-state\] serving 64 more runs"):
        check_bounded_state("tests.mutants.mutant_handles_kept:HandlesKeptBroker")


def test_a_subscriber_that_never_gets_done_is_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bound only ends the wait: this broker never delivers that done at all.
    monkeypatch.setattr(config.settings, "watchdog_seconds", 0.5)
    with pytest.raises(InvariantViolation, match=r"^\[no-hang-after-done\] .* got no done"):
        check_bounded_state("tests.mutants.mutant_unsubscribe_drops_all:UnsubscribeDropsAllBroker")


def test_an_exception_from_the_broker_is_reported_as_one() -> None:
    with pytest.raises(InvariantViolation, match=r"(?s)^\[no-exception\] .*cannot close"):
        check_bounded_state(f"{TARGETS}:RaisingCloseBroker")


def test_the_search_follows_containers_and_own_objects_only() -> None:
    own_object = targets.FixedRetentionBroker()
    own_object._closed["in-own-object"] = None
    roots = {
        "keys": {"in-keys": 1},
        "values": {1: "in-values"},
        "nested": [deque([("in-tuple", 0)])],
        "own": own_object,
        "foreign": types.SimpleNamespace(ids={"in-foreign-object"}),
        "other": {"not-served"},
    }
    ids = {"in-keys", "in-values", "in-tuple", "in-own-object", "in-foreign-object"}
    found = retained_run_ids(roots, ids, lambda value: value is own_object)
    assert found == {
        "keys": {"in-keys"},
        "values": {"in-values"},
        "nested[…][…]": {"in-tuple"},
        "own._closed": {"in-own-object"},
    }


def test_the_retained_runs_limit_is_inclusive() -> None:
    holders = {"broker._closed": {"a", "b"}, "broker._locks": {"b", "c"}}
    check_retained_runs(10, holders, allowed=3, retention="x=3")
    with pytest.raises(InvariantViolation, match=r"keeps 3 of them.*allows 2: broker._closed"):
        check_retained_runs(10, holders, allowed=2, retention="x=2")


def test_the_memory_growth_limit_is_inclusive() -> None:
    check_memory_growth(runs=10, growth=320, limit_per_run=32, allocated_at="")
    with pytest.raises(InvariantViolation, match=r"321 bytes more allocated, 32 a run"):
        check_memory_growth(runs=10, growth=321, limit_per_run=32, allocated_at="")


@pytest.mark.parametrize("impl", CORRECT)
def test_a_correct_broker_stays_far_below_the_memory_limit(impl: str) -> None:
    # What stays allocated moves by a few bytes a run from one run to the next (a table resized,
    # a cache filled once); the verdict must not, so a correct broker keeps a wide margin.
    measured = measure_bounded_state(impl, entry(impl).trace_modules)
    assert measured.kept <= measured.retention.allowed
    assert measured.growth <= MAX_GROWTH_PER_RUN * BATCH // 4
