"""The project's pytest set-up, checked by running pytest in a subprocess.

Profiles: ``--hypothesis-profile`` beats ``HYPOTHESIS_PROFILE``; a random profile's seed is
chosen up front and shown in the header. Selection: ``-k stateful`` picks exactly the tests
marked ``stateful``, which are exactly the tests under ``stateful/``. Failures the test
function never sees: an exception in another thread, an unraisable exception, and a hang (the
pytest-timeout backstop) all fail the run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MACHINE_TESTS = "stateful/test_stateful.py"
SUBPROCESS_TIMEOUT = 120


def pytest_run(
    *args: str, profile: str = "dev", cwd: Path = ROOT, ci_machine: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HYPOTHESIS_PROFILE": profile}
    # Hypothesis loads a derandomized profile of its own at import when it sees ``CI`` set.
    env.pop("CI", None)
    if ci_machine:
        env["CI"] = "true"
    env.pop("BROKER_IMPL", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )


def header(result: subprocess.CompletedProcess[str]) -> str:
    """The suite's own header line."""
    found = re.search(r"^stateful: .*$", result.stdout, re.MULTILINE)
    assert found, f"no 'stateful:' header line in:\n{result.stdout}{result.stderr}"
    return found.group(0)


def loaded_profile(result: subprocess.CompletedProcess[str]) -> str:
    """The profile Hypothesis itself reports having loaded (its header line, shown with -v)."""
    found = re.search(r"^hypothesis profile '([^']+)'", result.stdout, re.MULTILINE)
    assert found, f"no Hypothesis header line in:\n{result.stdout}{result.stderr}"
    return found.group(1)


def collected(*args: str) -> set[str]:
    result = pytest_run("--collect-only", "-q", *args, profile="ci")
    assert result.returncode == 0, result.stdout + result.stderr
    return {line for line in result.stdout.splitlines() if "::" in line}


def test_profile_comes_from_the_environment() -> None:
    result = pytest_run("--collect-only", "-v", MACHINE_TESTS, profile="ci")
    assert result.returncode == 0, result.stdout + result.stderr
    assert loaded_profile(result) == "ci"
    assert header(result).endswith("hypothesis profile ci, derandomized")


def test_profile_option_overrides_the_environment() -> None:
    result = pytest_run("--collect-only", "-v", MACHINE_TESTS, "--hypothesis-profile=dev")
    assert result.returncode == 0, result.stdout + result.stderr
    assert loaded_profile(result) == "dev"
    assert "hypothesis profile dev, --hypothesis-seed=" in header(result)


def test_random_profile_shows_its_seed_up_front() -> None:
    chosen = re.search(r"--hypothesis-seed=(\d+)$", header(pytest_run("--collect-only")))
    assert chosen, "a random profile must show the seed it chose"
    given = pytest_run("--collect-only", MACHINE_TESTS, "--hypothesis-seed=1234")
    assert header(given).endswith("hypothesis profile dev, --hypothesis-seed=1234")


@pytest.mark.parametrize("profile", ["dev", "nightly", "repro"])
def test_random_profiles_stay_random_on_a_ci_machine(profile: str) -> None:
    result = pytest_run("--collect-only", "-v", MACHINE_TESTS, profile=profile, ci_machine=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert loaded_profile(result) == profile
    assert f"hypothesis profile {profile}, --hypothesis-seed=" in header(result)


def test_broker_impl_option_names_the_class_under_test() -> None:
    spec = "tests.mutants.correct_global_lock:GlobalLockBroker"
    result = pytest_run("--collect-only", MACHINE_TESTS, f"--broker-impl={spec}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert header(result).startswith(f"stateful: broker {spec},")


def test_a_malformed_broker_impl_is_a_usage_error() -> None:
    result = pytest_run("--collect-only", MACHINE_TESTS, "--broker-impl=broker.RunBroker")
    assert result.returncode == 4
    assert "not of the form 'module:Class'" in result.stderr


def test_max_retained_runs_is_the_bound_for_a_broker_without_a_retention_parameter() -> None:
    check = f"{MACHINE_TESTS}::test_stateful_bounded_state"
    impl = "--broker-impl=tests.boundedstate_targets:FixedRetentionBroker"  # keeps 50
    within = pytest_run(check, impl, "--max-retained-runs=50", profile="ci")
    assert within.returncode == 0, within.stdout + within.stderr
    beyond = pytest_run(check, impl, "--max-retained-runs=49", profile="ci")
    assert beyond.returncode == 1, beyond.stdout + beyond.stderr
    assert "[bounded-state]" in beyond.stdout
    repro = re.search(r"^REPRO: (.*)$", beyond.stdout, re.MULTILINE)
    assert repro and repro.group(1).endswith(" --max-retained-runs=49")
    negative = pytest_run("--collect-only", MACHINE_TESTS, "--max-retained-runs=-1")
    assert negative.returncode == 4
    assert "--max-retained-runs must be >= 0" in negative.stderr


def test_keyword_selection_is_exactly_the_marked_machine_tests() -> None:
    by_keyword = collected("-k", "stateful")
    by_marker = collected("-m", "stateful")
    by_folder = collected("stateful/")
    assert by_keyword, "-k stateful selected nothing"
    assert by_keyword == by_marker, (
        f"selected by -k but not marked: {sorted(by_keyword - by_marker)}; "
        f"marked but not selected by -k: {sorted(by_marker - by_keyword)}"
    )
    assert by_folder == by_marker, (
        f"in stateful/ but not marked: {sorted(by_folder - by_marker)}; "
        f"marked but outside stateful/: {sorted(by_marker - by_folder)}"
    )


def run_probe(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one test file with this project's pytest configuration (``pyproject.toml``)."""
    (tmp_path / "test_probe.py").write_text(source)
    return pytest_run(
        "-c",
        str(ROOT / "pyproject.toml"),
        "--rootdir",
        str(tmp_path),
        "test_probe.py",
        *args,
        cwd=tmp_path,
    )


def test_an_exception_in_another_thread_fails_the_test(tmp_path: Path) -> None:
    result = run_probe(
        tmp_path,
        "import threading\n"
        "def crash():\n"
        "    raise ZeroDivisionError('in a worker thread')\n"
        "def test_worker():\n"
        "    worker = threading.Thread(target=crash)\n"
        "    worker.start()\n"
        "    worker.join()\n",
    )
    assert result.returncode == 1, result.stdout
    assert "PytestUnhandledThreadExceptionWarning" in result.stdout
    assert "ZeroDivisionError: in a worker thread" in result.stdout


def test_an_unraisable_exception_fails_the_test(tmp_path: Path) -> None:
    result = run_probe(
        tmp_path,
        "class Leaky:\n"
        "    def __del__(self):\n"
        "        raise RuntimeError('in __del__')\n"
        "def test_finalizer():\n"
        "    Leaky()\n",
    )
    assert result.returncode == 1, result.stdout
    assert "PytestUnraisableExceptionWarning" in result.stdout
    assert "RuntimeError: in __del__" in result.stdout


def test_a_hang_is_ended_by_the_timeout_backstop(tmp_path: Path) -> None:
    # The configured backstop is far longer than a test may wait; only the method is under test
    # here, so the limit is lowered. The thread method ends the whole run and dumps every
    # thread's stack, which also catches a hang in a thread that signals cannot interrupt.
    result = run_probe(
        tmp_path,
        "import threading\ndef test_hangs():\n    threading.Event().wait()\n",
        "-o",
        "timeout=2",
    )
    assert result.returncode != 0
    assert "Timeout" in result.stdout + result.stderr
    assert "Stack of" in result.stdout + result.stderr
