"""The conformance profile (``stateful.conformance``): a broker correct by its own declared
contract passes with the declaration and fails without it, naming the invariant; a buggy
variant still fails with it. The brokers are in ``tests/conformance_targets.py``.

First as plain steps (one example, the same every run), then found by the state machine itself
(a few examples, derandomized), by the small-scope races, in a new interpreter (the contract
carried as options), from a kill-matrix registry entry, and from pytest's command line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from textwrap import dedent

import pytest
from hypothesis import settings as Settings

from stateful.conformance import Conformance, load_predicate
from stateful.errors import ScheduleFailure
from stateful.history import Noise
from stateful.killmatrix import main, measure, measure_in_new_process
from stateful.regression import (
    Close,
    Emit,
    PreemptionSchedule,
    Replay,
    RunInterleaved,
    Subscribe,
    replay,
    replay_steps,
)
from stateful.scenarios import SCENARIOS, explore_scenario
from tests.conformance_targets import is_keep_alive
from tests.test_plugin import pytest_run

ROOT = Path(__file__).resolve().parent.parent
TARGETS = "tests.conformance_targets"
KEEP_ALIVE = f"{TARGETS}:KeepAliveBroker"
TRAILING_KEEP_ALIVE = f"{TARGETS}:TrailingKeepAliveBroker"
HISTORY = f"{TARGETS}:HistoryBroker"
HISTORY_FROM_SECOND = f"{TARGETS}:HistoryFromSecondBroker"
NOISE = Conformance(items=f"{TARGETS}:is_keep_alive")
ALL_HISTORY = Conformance(history="all")
SEED_CONTRACT = Conformance()
# Enough for the state machine to find each defect (each within its first few examples) and
# little enough to keep this file under a minute.
FEW_EXAMPLES = 30


def noise_steps(state: Replay) -> None:
    """One reader of a run that gets two events and a close."""
    state.step(op=Subscribe(slot=0))
    state.step(op=Emit(producer=0, slot=0, count=2))
    state.step(op=Close(producer=0, slot=0))
    state.step(op=RunInterleaved(schedule=PreemptionSchedule()))


def history_steps(state: Replay) -> None:
    """Two events, then a reader and close, then a reader after close."""
    state.step(op=Emit(producer=0, slot=0, count=1))
    state.step(op=Emit(producer=1, slot=0, count=1))
    state.step(op=RunInterleaved(schedule=PreemptionSchedule()))
    state.step(op=Subscribe(slot=0))
    state.step(op=Close(producer=0, slot=0))
    state.step(op=RunInterleaved(schedule=PreemptionSchedule()))
    state.step(op=Subscribe(slot=0))
    state.step(op=Emit(producer=0, slot=0, count=1))
    state.step(op=RunInterleaved(schedule=PreemptionSchedule()))


def test_noise_is_an_order_violation_unless_declared() -> None:
    with pytest.raises(ScheduleFailure, match=r"^\[order\] .*': connected'"):
        replay_steps(noise_steps, KEEP_ALIVE, SEED_CONTRACT)
    with replay(KEEP_ALIVE, conformance=NOISE) as state:
        noise_steps(state)
    (reader,) = state.machine.history.subscribers
    assert [item for item in reader.stream if isinstance(item, Noise)] == [
        Noise(": connected"),
        Noise(": keep-alive"),
        Noise(": keep-alive"),
    ]
    assert reader.items == [item for item in reader.stream if not isinstance(item, Noise)]
    assert [item["type"] for item in reader.items] == ["event", "event", "done"]
    assert reader.describe().endswith(
        "received [noise ': connected', P0#1, P0#2, noise ': keep-alive', "
        "noise ': keep-alive', done]"
    )


def test_noise_after_done_is_nothing_after_done() -> None:
    with pytest.raises(
        ScheduleFailure, match=r"^\[nothing-after-done\] s1 got noise ': keep-alive' after done"
    ):
        replay_steps(noise_steps, TRAILING_KEEP_ALIVE, NOISE)


def test_the_predicate_is_not_asked_about_events_and_markers() -> None:
    everything = Conformance(items=f"{TARGETS}:is_anything", history="all")
    replay_steps(noise_steps, KEEP_ALIVE, everything)
    with pytest.raises(ScheduleFailure, match=r"^\[no-lost-events\] "):
        replay_steps(history_steps, HISTORY_FROM_SECOND, everything)


def test_a_wrapped_done_is_not_done() -> None:
    wrapped = f"{TARGETS}:WrappedDoneBroker"
    with pytest.raises(ScheduleFailure, match=r"""^\[order\] .*'data: \{"type": "done"\}'"""):
        replay_steps(noise_steps, wrapped, NOISE)
    everything = Conformance(items=f"{TARGETS}:is_anything")
    with pytest.raises(ScheduleFailure, match=r"^\[no-hang-after-done\] .* s1 never got done"):
        replay_steps(noise_steps, wrapped, everything)


def test_history_is_nothing_after_done_unless_declared() -> None:
    with pytest.raises(
        ScheduleFailure, match=r"^\[nothing-after-done\] s2 subscribed at t\d+, after close"
    ):
        replay_steps(history_steps, HISTORY, SEED_CONTRACT)
    with replay(HISTORY, conformance=ALL_HISTORY) as state:
        history_steps(state)
    early, late = state.machine.history.subscribers
    assert early.describe().endswith("received [P0#1, P1#1, done]")
    assert late.describe().endswith("received [P0#1, P1#1, done]")
    assert "\nDeclared contract: items events and markers only, history all\n" in (
        state.machine.report()
    )


def test_declared_history_with_an_event_missing_is_a_lost_event() -> None:
    with pytest.raises(
        ScheduleFailure,
        match=r"^\[no-lost-events\] s1 on r1 subscribed at t\d+ and never got P0#1, emitted "
        r"t\d+-t\d+ before close, in the run's history",
    ):
        replay_steps(history_steps, HISTORY_FROM_SECOND, ALL_HISTORY)


@pytest.mark.parametrize(
    ("spec", "conformance", "invariant"),
    [
        (KEEP_ALIVE, SEED_CONTRACT, "order"),
        (KEEP_ALIVE, NOISE, None),
        (TRAILING_KEEP_ALIVE, NOISE, "nothing-after-done"),
        (HISTORY, SEED_CONTRACT, "nothing-after-done"),
        (HISTORY, ALL_HISTORY, None),
        (HISTORY_FROM_SECOND, ALL_HISTORY, "no-lost-events"),
    ],
    ids=[
        "keep-alive-undeclared",
        "keep-alive-declared",
        "trailing-keep-alive-declared",
        "history-undeclared",
        "history-declared",
        "history-from-second-declared",
    ],
)
def test_the_state_machine_judges_a_broker_by_its_declared_contract(
    spec: str, conformance: Conformance, invariant: str | None
) -> None:
    few = Settings(Settings.get_profile("ci"), max_examples=FEW_EXAMPLES)
    outcome = measure(spec, few, conformance=conformance, shrink=False)
    assert outcome.invariant == invariant, outcome.message
    if invariant is None:
        assert outcome.examples >= FEW_EXAMPLES


def test_the_small_scope_races_judge_it_by_its_declared_contract() -> None:
    (race,) = [s for s in SCENARIOS if s.name == "run with a reader: Subscribe vs Close"]
    assert explore_scenario(race, KEEP_ALIVE, conformance=NOISE) > 0
    assert explore_scenario(race, HISTORY, conformance=ALL_HISTORY) > 0
    with pytest.raises(ScheduleFailure, match=r"^\[nothing-after-done\] "):
        explore_scenario(race, HISTORY, conformance=SEED_CONTRACT)


def test_a_new_interpreter_gets_the_declared_contract() -> None:
    # Undeclared, the keep-alive broker dies of its first greeting; its buggy variant, declared,
    # gets past the greetings and dies of what it sends after done.
    undeclared = measure_in_new_process(KEEP_ALIVE, "ci", cwd=ROOT, timeout=120)
    assert undeclared.invariant == "order", undeclared.message
    declared = measure_in_new_process(
        TRAILING_KEEP_ALIVE, "ci", cwd=ROOT, timeout=120, conformance=NOISE
    )
    assert declared.invariant == "nothing-after-done", declared.message


def test_a_registry_entry_declares_its_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "conformance_registry.py").write_text(
        dedent(
            f"""
            from stateful.conformance import Conformance
            from tests.mutants import ZooEntry

            def zoo():
                return [
                    ZooEntry(
                        "{TRAILING_KEEP_ALIVE}",
                        False,
                        "a keep-alive after done",
                        "nothing-after-done",
                        conformance=Conformance(items="{NOISE.items}"),
                    )
                ]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = ["--profile", "ci", "--registry", "conformance_registry", "--verdict"]
    assert main([*registry, TRAILING_KEEP_ALIVE]) == 0
    # Undeclared, its first greeting would be an ``order`` violation.
    assert json.loads(capsys.readouterr().out)["invariant"] == "nothing-after-done"


def test_a_declaration_is_checked_when_it_is_made() -> None:
    with pytest.raises(ValueError, match="history 'some' is not one of: none, all"):
        Conformance(history="some")
    with pytest.raises(ValueError, match="is not of the form 'module:function'"):
        load_predicate(f"{TARGETS}.is_keep_alive")
    with pytest.raises(ValueError, match=f"module '{TARGETS}' has no attribute 'nope'"):
        load_predicate(f"{TARGETS}:nope")
    with pytest.raises(ValueError, match="is not callable: it is a str"):
        load_predicate(f"{TARGETS}:NOT_A_PREDICATE")
    with pytest.raises(ImportError, match="no_such_module"):
        load_predicate("no_such_module:is_noise")
    assert load_predicate(f"{TARGETS}:is_keep_alive") is is_keep_alive


def test_options_declare_the_same_contract() -> None:
    declared = Conformance(items=NOISE.items, history="all")
    assert declared.options() == [f"--broker-items={NOISE.items}", "--broker-history=all"]
    assert SEED_CONTRACT.options() == []


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (f"--broker-items={TARGETS}:NOT_A_PREDICATE", "--broker-items: .* is not callable"),
        ("--broker-items=no_such_module:is_noise", "--broker-items: No module named"),
        ("--broker-items=is_noise", "--broker-items: 'is_noise' is not of the form"),
        ("--broker-history=some", "--broker-history: invalid choice: 'some'"),
    ],
)
def test_bad_declarations_are_usage_errors(option: str, message: str) -> None:
    result = pytest_run("--collect-only", "stateful/test_stateful.py", option, profile="ci")
    assert result.returncode == 4, result.stdout + result.stderr
    assert re.search(message, result.stderr), result.stderr


def test_bad_declarations_stop_the_kill_matrix_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--verdict", "--broker-items=no_such_module:is_noise", KEEP_ALIVE])
    assert stopped.value.code == 2
    assert "--broker-items: No module named 'no_such_module'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--verdict", "--broker-history=some", KEEP_ALIVE])
    assert "--broker-history: invalid choice: 'some'" in capsys.readouterr().err


def test_the_header_and_the_repro_line_carry_the_declaration() -> None:
    # The bounded-state check fails at once for a broker that keeps more closed runs than it
    # may (as in tests/test_plugin.py), and its failure gets a REPRO line as any stateful test's.
    declared = [f"--broker-items={NOISE.items}", "--broker-history=all"]
    spec = "tests.boundedstate_targets:FixedRetentionBroker"  # keeps 50 closed runs
    result = pytest_run(
        "stateful/test_stateful.py::test_stateful_bounded_state",
        f"--broker-impl={spec}",
        "--max-retained-runs=49",
        *declared,
        profile="ci",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"stateful: broker {spec} (items {NOISE.items}, history all), "
        "hypothesis profile ci, derandomized" in result.stdout
    )
    repro = re.search(r"^REPRO: (.*)$", result.stdout, re.MULTILINE)
    assert repro, result.stdout
    assert repro.group(1).endswith(" ".join(["--max-retained-runs=49", *declared]))
