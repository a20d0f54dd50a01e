"""``python -m stateful.killmatrix`` judges each verdict against its registry: a survivor, a
false alarm or a kill by an invariant the entry does not name makes it exit with status 1."""

import dataclasses
import re
import textwrap
from pathlib import Path

import pytest

from stateful.killmatrix import Outcome, main, unexpected
from tests.mutants import ZooEntry

MUTANT = ZooEntry("m:Mutant", False, "a defect", "order", ("no-duplicates",))
CORRECT = ZooEntry("c:Correct", True, "a design", None)


def outcome(invariant: str | None) -> Outcome:
    return Outcome(
        spec="x:X",
        killed=invariant is not None,
        invariant=invariant,
        examples_to_failure=3 if invariant else None,
        seconds_to_failure=0.1 if invariant else None,
        shrunk_steps=2 if invariant else None,
        examples=3 if invariant else 60,
        seconds=0.1,
        message=f"[{invariant}] what broke" if invariant else "",
    )


def test_a_mutant_killed_by_its_invariant_or_an_also_is_as_expected() -> None:
    assert unexpected(MUTANT, outcome("order")) is None
    assert unexpected(MUTANT, outcome("no-duplicates")) is None


def test_a_mutant_killed_by_another_invariant_is_not() -> None:
    problem = unexpected(MUTANT, outcome("no-lost-events"))
    assert problem is not None and "killed by no-lost-events" in problem


def test_a_surviving_mutant_is_not() -> None:
    assert unexpected(MUTANT, outcome(None)) == "survived 60 examples"


def test_a_correct_broker_must_pass() -> None:
    assert unexpected(CORRECT, outcome(None)) is None
    problem = unexpected(CORRECT, outcome("order"))
    assert problem is not None and problem.startswith("false alarm")


def test_a_mutant_needs_one_part_of_the_suite_to_kill_it() -> None:
    explored = dataclasses.replace(outcome("order"), unit="schedules")
    assert unexpected(MUTANT, outcome(None), explored) is None
    survived = dataclasses.replace(outcome(None), examples=1200, unit="schedules")
    assert unexpected(MUTANT, outcome(None), survived) == (
        "survived 60 examples and 1200 schedules"
    )
    problem = unexpected(MUTANT, outcome("order"), outcome("no-lost-events"))
    assert problem is not None and "killed by no-lost-events" in problem


def test_a_correct_broker_must_pass_both_parts() -> None:
    problem = unexpected(CORRECT, outcome(None), outcome("no-hang-after-done"))
    assert problem is not None
    assert problem.startswith("false alarm on a correct broker (no-hang-after-done)")


def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, correct: bool) -> str:
    """A registry module with one entry: the package's broker, expected to pass or to die."""
    name = f"registry_{'correct' if correct else 'mutant'}"
    expectation = "True, 'the real broker', None" if correct else "False, 'a defect', 'order'"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            f"""
            from tests.mutants import ZooEntry

            def zoo():
                return [ZooEntry("broker:RunBroker", {expectation})]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.parametrize("correct", [True, False], ids=["expected-pass", "expected-kill"])
def test_the_command_exits_1_when_a_verdict_is_not_the_expected_one(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    correct: bool,
) -> None:
    name = registry(tmp_path, monkeypatch, correct=correct)
    status = main(["--profile", "dev", "--no-stress", "--registry", name])
    out, err = capsys.readouterr()
    assert "| broker:RunBroker |" in out
    if correct:
        assert status == 0 and "not as expected" not in err
    else:
        assert status == 1
        assert re.search(r"not as expected: broker:RunBroker: survived \d+ examples", err)
