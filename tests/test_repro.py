"""The ``REPRO:`` line reproduces the failure it was printed for.

pytest runs the state machine in a subprocess, under the random ``dev`` profile, against a
broker known to be wrong; the failure report must carry a ``REPRO:`` line with the seed the
header announced, and the ``@reproduce_failure`` blob. Running the ``REPRO:`` line, as printed,
must fail again with the same invariant and the same shrunk steps.

The broker wakes no consumer when it delivers from a producer thread, a defect almost every
example trips, so the random first run finds it within its first few examples whatever its
seed. Each run gets an empty example database of its own, so the first run's failure comes from
its seed, and the second run cannot borrow it from the database.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUGGY = "tests.mutants.mutant_put_from_producer_thread:PutFromProducerThreadBroker"
MACHINE_TEST = "stateful/test_stateful.py::test_stateful_run_broker"
# Generous: each run takes well under a minute (finding the failure, then shrinking it).
SUBPROCESS_TIMEOUT = 600


def run_pytest(args: list[str], database: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HYPOTHESIS_PROFILE": "dev", "HYPOTHESIS_STORAGE_DIRECTORY": str(database)}
    env.pop("BROKER_IMPL", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )


def one(pattern: str, text: str) -> str:
    found = re.findall(pattern, text, re.MULTILINE)
    assert len(found) == 1, f"expected one match of {pattern!r}, got {found} in:\n{text}"
    return str(found[0])


def broken_invariant(output: str) -> str:
    return one(r"^E +stateful\.errors\.\w+: \[([a-z-]+)\]", output)


def shrunk_steps(output: str) -> list[str]:
    """The steps of the failing example, as the failure report shows them."""
    report = [line.removeprefix("E").strip() for line in output.splitlines() if line[:1] == "E"]
    start = report.index("Failing test case: <state machine>")
    end = next(i for i in range(start, len(report)) if report[i].startswith("Implementation"))
    return report[start + 1 : end]


def test_repro_line_reproduces_the_failure(tmp_path: Path) -> None:
    first = run_pytest([MACHINE_TEST, f"--broker-impl={BUGGY}"], tmp_path / "first")
    output = first.stdout
    assert first.returncode == 1, f"the buggy broker passed:\n{output}{first.stderr}"
    seed = one(r"^stateful: .*--hypothesis-seed=(\d+)$", output)
    assert "@reproduce_failure(" in output
    repro = one(r"^REPRO: (.*)$", output)
    command = shlex.split(repro)
    assert command[0] == "pytest"
    assert f"--hypothesis-seed={seed}" in command
    assert f"--broker-impl={BUGGY}" in command

    again = run_pytest(command[1:], tmp_path / "again")
    assert again.returncode == 1, f"the REPRO line did not fail:\n{again.stdout}{again.stderr}"
    assert broken_invariant(again.stdout) == broken_invariant(output)
    assert shrunk_steps(again.stdout) == shrunk_steps(output)
