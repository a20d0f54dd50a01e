"""The benchmarks run (``--quick``) and print every row, and the search table computes what it
prints; no timing is asserted."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Main = Callable[[list[str]], int]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Main:
    """``python -m bench``'s entry point; bench/ is run from the repository root, not installed."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    from bench.__main__ import main

    return main


def test_the_quick_fanout_benchmark_prints_every_row(
    bench: Main, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench(["fanout", "--quick"]) == 0
    table = capsys.readouterr().out
    for row in (
        "(a) vs (b) deliveries/s, in-loop floor",
        "(a) vs (c) deliveries/s, original design",
        "(d) us/emit, 1 subscriber",
        "(d) us/emit, 10 subscribers",
        "(d) us/emit, 100 subscribers",
        "(d) us/emit at 100 / at 1 subscriber(s)",
        "(e) peak MiB, 1,000 runs closed",
        "(e) peak MiB, 5,000 runs closed",
    ):
        assert row in table, f"missing row {row!r} in:\n{table}"


def test_the_quick_load_benchmark_prints_every_row_and_loses_nothing(
    bench: Main, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench(["load", "--quick"]) == 0  # 1 if an event was lost or a subscriber cut off
    table = capsys.readouterr().out
    for row in (
        "deliveries/s",
        "emits/s, all producers",
        "peak RSS, MiB",
        "peak events held for delivery",
    ):
        assert row in table, f"missing row {row!r} in:\n{table}"
    assert re.search(r"^events lost +0 +0$", table, re.MULTILINE), table
    assert re.search(r"^subscribers cut off +0 +0$", table, re.MULTILINE), table


def test_the_quick_scheduler_benchmark_prints_every_row(
    bench: Main, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench(["scheduler", "--quick"]) == 0
    table = capsys.readouterr().out
    for row in (
        "(f) switch points/s, 1 thread, RunToCompletion",
        "(f) switch points/s, 2 threads alternating",
        "(f) the same lines untraced",
        "(g) examples/s, RunBrokerMachine vs broker:RunBroker",
        "(g) switch points per example",
        "(g) switch points/s over the whole machine run",
    ):
        assert row in table, f"missing row {row!r} in:\n{table}"


def test_the_quick_tracing_benchmark_prints_every_way_with_the_same_line_events(
    bench: Main, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench(["tracing", "--quick"]) == 0
    table = capsys.readouterr().out
    ways = ["untraced", "sys.settrace"] + (["sys.monitoring"] if hasattr(sys, "monitoring") else [])
    events, one_line = {}, {}
    for way in ways:
        match = re.search(rf"^{re.escape(way)}\s.*\s([\d,]+)\s+([\d,]+)$", table, re.M)
        assert match, f"missing row {way!r} in:\n{table}"
        events[way], one_line[way] = (int(group.replace(",", "")) for group in match.groups())
    assert events["untraced"] == one_line["untraced"] == 0
    # Both ways stop before every line of the traced loop: the same switch points.
    assert len({events[way] for way in ways[1:]}) == 1 and events["sys.settrace"] > 0, table
    # In a loop on one line, sys.settrace stops at every turn (1,000), LINE events do not.
    assert one_line["sys.settrace"] > 1_000, table
    if "sys.monitoring" in ways:
        assert one_line["sys.monitoring"] < 10, table


def test_an_unknown_benchmark_is_a_usage_error(
    bench: Main, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench(["nope"]) == 2
    assert "usage" in capsys.readouterr().err


def test_the_quick_search_benchmark_prints_every_row(
    bench: Main, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench(["search", "--quick"]) == 0
    table = capsys.readouterr().out
    assert "examples per seed" in table, table
    assert re.search(r"^mutant_original_design +[01]/1 ", table, re.MULTILINE), table


def test_the_search_table_gives_the_mean_with_its_standard_error(bench: Main) -> None:
    from bench.search import Config, Search, find, format_table
    from stateful.killmatrix import Outcome

    def outcome(examples: int, killed: bool = True) -> Outcome:
        return Outcome(
            spec="spec",
            killed=killed,
            invariant="order" if killed else None,
            examples_to_failure=examples if killed else None,
            seconds_to_failure=1.0 if killed else None,
            shrunk_steps=None,
            examples=examples,
            seconds=1.0,
        )

    entry = find(["mutant_original_design"])[0]
    # 10, 20 and a survivor after 30: mean 20, standard deviation 10, over the root of 3.
    search = Search(entry, (outcome(10), outcome(20), outcome(30, killed=False)))
    table = format_table(Config(seeds=3, mutants=("mutant_original_design",)), [search])
    row = next(line for line in table.splitlines() if line.startswith("mutant_original_design"))
    expected = ["mutant_original_design", "2/3", "20.0", "5.8", "30", "1.0", "1.0", "10 20 -"]
    assert row.split(maxsplit=7) == expected, table
