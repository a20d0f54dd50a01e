"""The kill matrix: how well the suite catches buggy brokers, and that it passes correct ones.

The suite has two parts, and each is measured on its own. ``measure`` runs the state machine
against one implementation and reports whether it failed, with which invariant, after how many
examples and seconds, and how many steps the shrunk example has. ``measure_small_scope`` runs
the small-scope checks, which draw nothing: the bounded-state check (``stateful.boundedstate``),
then the small-scope races (``stateful.scenarios``) under every schedule in their bound; it
reports whether one failed, with which invariant, and after how many seconds. ``unexpected`` says
whether the two outcomes are what a registry entry expects: a correct broker passes both, a
mutant fails at least one, each with an invariant the entry names. ``python -m
stateful.killmatrix`` prints that as a table for every broker in a registry module (default
``tests.mutants``, whose ``zoo()`` lists entries with ``impl``, ``correct``, ``invariant``,
``also``, ``trace_modules`` and, optionally, ``conformance``), under a Hypothesis profile, with
the free-running stress mode side by side, and exits with status 1 when an entry's controlled
verdicts are not the expected ones::

    python -m stateful.killmatrix --profile ci

``--broker-items`` and ``--broker-history`` declare the contract the brokers are judged by
(``stateful.conformance``); without them, each registry entry's own ``conformance`` is used.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hypothesis import Phase
from hypothesis import settings as Settings
from hypothesis.errors import Flaky

from stateful.boundedstate import check_bounded_state
from stateful.conformance import HISTORY_CHOICES, Conformance
from stateful.errors import ScheduleFailure
from stateful.machine import RunBrokerMachine, machine_for
from stateful.runner import run_machine
from stateful.scenarios import explore_all


@dataclass
class Outcome:
    """What one run of the suite against one implementation found."""

    spec: str
    killed: bool
    invariant: str | None
    examples_to_failure: int | None
    seconds_to_failure: float | None
    shrunk_steps: int | None
    examples: int
    seconds: float
    message: str = ""
    #: What ``examples`` counts: Hypothesis examples, or schedules for the small-scope races.
    unit: str = "examples"


class Expectation(Protocol):
    """What a registry entry expects of the suite: pass a correct broker, fail a mutant with
    ``invariant`` or one of ``also``."""

    @property
    def correct(self) -> bool: ...
    @property
    def invariant(self) -> str | None: ...
    @property
    def also(self) -> tuple[str, ...]: ...


def unexpected(expected: Expectation, *outcomes: Outcome) -> str | None:
    """Why ``outcomes`` (of the parts of the suite that ran) are not what ``expected`` asks
    for, or None when they are."""
    killed = [outcome for outcome in outcomes if outcome.killed]
    if expected.correct:
        if killed:
            first = killed[0]
            return f"false alarm on a correct broker ({first.invariant}):\n{first.message}"
        return None
    if not killed:
        return "survived " + " and ".join(f"{o.examples} {o.unit}" for o in outcomes)
    allowed = (expected.invariant, *expected.also)
    for outcome in killed:
        if outcome.invariant not in allowed:
            return f"killed by {outcome.invariant}, expected one of {allowed}:\n{outcome.message}"
    return None


class _Probe:
    """Counts examples and remembers when the first failure happened."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.examples = 0
        self.first_failure: tuple[int, float] | None = None
        self.last_failing_steps: int | None = None


def _probed(machine: type[RunBrokerMachine], probe: _Probe) -> type[RunBrokerMachine]:
    class Probed(machine):  # type: ignore[valid-type, misc]
        def __init__(self) -> None:
            probe.examples += 1
            super().__init__()

        def teardown(self) -> None:
            try:
                super().teardown()
            finally:
                if self._failed:
                    if probe.first_failure is None:
                        elapsed = time.perf_counter() - probe.start
                        probe.first_failure = (probe.examples, elapsed)
                    probe.last_failing_steps = len(self._steps)

    Probed.__name__ = machine.__name__
    return Probed


def measure(
    spec: str,
    settings: Settings,
    *,
    free_running: bool = False,
    shrink: bool = True,
    trace_modules: tuple[str, ...] = (),
    seed: int | None = None,
    conformance: Conformance | None = None,
) -> Outcome:
    """Run the suite against ``spec`` under ``settings`` (and Hypothesis ``seed``, unless
    derandomized), tracing ``trace_modules`` besides the module defining the class, judging it
    by ``conformance`` (None: the configured one); never raises for a failure."""
    phases = [phase for phase in settings.phases if shrink or phase is not Phase.shrink]
    settings = Settings(settings, phases=phases, report_multiple_bugs=False, database=None)
    probe = _Probe()
    invariant: str | None = None
    message = ""
    try:
        machine = machine_for(
            spec, free_running=free_running, trace_modules=trace_modules, conformance=conformance
        )
        run_machine(_probed(machine, probe), settings=settings, seed=seed)
    except ScheduleFailure as failure:
        invariant, message = failure.invariant, str(failure)
    except Flaky as failure:
        invariant, message = "flaky", str(failure)
    except Exception as failure:  # a broker that cannot even be driven is killed too
        invariant, message = type(failure).__name__, str(failure)
    seconds = time.perf_counter() - probe.start
    found = probe.first_failure
    return Outcome(
        spec=spec,
        killed=invariant is not None,
        invariant=invariant,
        examples_to_failure=found[0] if found else None,
        seconds_to_failure=found[1] if found else None,
        shrunk_steps=probe.last_failing_steps if invariant is not None else None,
        examples=probe.examples,
        seconds=seconds,
        message=message,
    )


def measure_small_scope(
    spec: str, trace_modules: tuple[str, ...] = (), conformance: Conformance | None = None
) -> Outcome:
    """Run the bounded-state check against ``spec``, then the small-scope races under every
    schedule in their bound, judged by ``conformance`` (the bounded-state check judges no
    delivered item, so it needs none); never raises for a failure. They draw nothing from
    Hypothesis, so any process will do."""
    start = time.perf_counter()
    schedules = 0
    invariant: str | None = None
    message = ""
    try:
        check_bounded_state(spec, trace_modules)
        schedules = explore_all(spec, trace_modules, conformance)
    except ScheduleFailure as failure:
        invariant = failure.invariant
        message = "\n".join((str(failure), *getattr(failure, "__notes__", ())))
    except Exception as failure:  # a broker that cannot even be driven is killed too
        invariant, message = type(failure).__name__, str(failure)
    seconds = time.perf_counter() - start
    return Outcome(
        spec=spec,
        killed=invariant is not None,
        invariant=invariant,
        examples_to_failure=None,
        seconds_to_failure=seconds if invariant is not None else None,
        shrunk_steps=None,
        examples=schedules,
        seconds=seconds,
        message=message,
        unit="schedules",
    )


def measure_in_new_process(
    spec: str,
    profile: str,
    *,
    seed: int | None = None,
    small_scope: bool = False,
    cwd: Path | None = None,
    timeout: float | None = None,
    conformance: Conformance | None = None,
) -> Outcome:
    """``measure`` without shrinking, under a Hypothesis profile (and ``seed``), in a fresh
    interpreter (``--verdict``). Hypothesis seeds part of its generation with constants of the
    project's modules loaded in the process, so measured in a process that imported other
    brokers first, the same seed would give another verdict. With ``small_scope``, it is
    ``measure_small_scope`` that runs there (``--verdict --small-scope``), so that the two parts
    can run side by side. ``conformance`` goes there as the options that declare it."""
    command = [sys.executable, "-m", "stateful.killmatrix", "--profile", profile, "--verdict"]
    if seed is not None:
        command += ["--seed", str(seed)]
    if small_scope:
        command.append("--small-scope")
    if conformance is not None:
        command += conformance.options()
    done = subprocess.run(
        [*command, spec], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the kill matrix could not measure {spec}:\n{done.stderr}")
    return Outcome(**json.loads(done.stdout.splitlines()[-1]))


def _cell(outcome: Outcome) -> str:
    if not outcome.killed:
        return f"passed ({outcome.examples} {outcome.unit}, {outcome.seconds:.1f}s)"
    where = (
        f"ex {outcome.examples_to_failure}, {outcome.seconds_to_failure:.1f}s"
        if outcome.examples_to_failure is not None and outcome.seconds_to_failure is not None
        else f"{outcome.seconds:.1f}s"
    )
    return f"{outcome.invariant} ({where})"


@dataclass
class Row:
    """One implementation's line of the table."""

    expected: str
    controlled: Outcome
    small_scope: Outcome
    free: Outcome | None


def table(rows: Sequence[Row]) -> str:
    """Markdown: one row per implementation, the state machine under the controlled scheduler,
    the small-scope checks and the free-running stress mode side by side."""
    lines = [
        "| implementation | expected | controlled scheduler | shrunk steps "
        "| bounded state, small-scope races | free-running stress (profile's examples) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        name = row.controlled.spec.rpartition(".")[2]
        lines.append(
            f"| {name} | {row.expected} | {_cell(row.controlled)} | "
            f"{row.controlled.shrunk_steps or '-'} | {_cell(row.small_scope)} | "
            f"{_cell(row.free) if row.free else '-'} |"
        )
    return "\n".join(lines)


def _expected(entry: Any) -> str:
    if entry is None:
        return "?"
    return "pass" if entry.correct else " / ".join((entry.invariant, *entry.also))


def _contract(entry: Any, declared: Conformance) -> Conformance:
    """The contract a broker is judged by: the one the command line declares, else its
    registry entry's (an entry need not have one)."""
    if declared != Conformance() or entry is None:
        return declared
    own: Conformance = getattr(entry, "conformance", declared)
    return own


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ci", help="Hypothesis profile (default: ci)")
    parser.add_argument("--registry", default="tests.mutants", help="module with a zoo()")
    parser.add_argument("--no-stress", action="store_true", help="skip the free-running column")
    parser.add_argument(
        "--verdict",
        action="store_true",
        help="controlled mode only, no shrinking; print each outcome as a JSON line",
    )
    parser.add_argument(
        "--seed", type=int, help="with --verdict: this Hypothesis seed, not derandomized"
    )
    parser.add_argument(
        "--small-scope",
        action="store_true",
        help="with --verdict: the small-scope checks' outcome, not the state machine's",
    )
    parser.add_argument(
        "--broker-items",
        metavar="module:function",
        help="the predicate that says which extra items the brokers may send",
    )
    parser.add_argument(
        "--broker-history",
        choices=HISTORY_CHOICES,
        default=HISTORY_CHOICES[0],
        help="whether a new subscriber first gets the run's history (default: none)",
    )
    parser.add_argument("specs", nargs="*", help="module:Class to measure (default: the registry)")
    args = parser.parse_args(argv)
    declared = Conformance(args.broker_items, args.broker_history)
    try:
        declared.noise_predicate()
    except (ImportError, ValueError) as error:
        parser.error(f"--broker-items: {error}")
    importlib.import_module("conftest")  # registers the project's Hypothesis profiles
    settings = Settings.get_profile(args.profile)
    if args.seed is not None:
        if not args.verdict:
            parser.error("--seed goes with --verdict")
        settings = Settings(settings, derandomize=False)
    if args.small_scope and not args.verdict:
        parser.error("--small-scope goes with --verdict")
    registry = importlib.import_module(args.registry)
    entries = {entry.impl: entry for entry in registry.zoo()}
    rows = []
    problems = []
    for spec in args.specs or list(entries):
        entry = entries.get(spec)
        traced = entry.trace_modules if entry is not None else ()
        contract = _contract(entry, declared)
        if args.verdict:
            outcome = (
                measure_small_scope(spec, traced, contract)
                if args.small_scope
                else measure(
                    spec,
                    settings,
                    shrink=False,
                    trace_modules=traced,
                    seed=args.seed,
                    conformance=contract,
                )
            )
            print(json.dumps(dataclasses.asdict(outcome)))
            continue
        controlled = measure(spec, settings, trace_modules=traced, conformance=contract)
        small_scope = measure_small_scope(spec, traced, contract)
        problem = unexpected(entry, controlled, small_scope) if entry is not None else None
        if problem is not None:
            problems.append(f"{spec}: {problem}")
        free = (
            None
            if args.no_stress
            else measure(
                spec,
                settings,
                free_running=True,
                shrink=False,
                trace_modules=traced,
                conformance=contract,
            )
        )
        rows.append(Row(_expected(entry), controlled, small_scope, free))
        print(f"measured {spec}", file=sys.stderr)
    if args.verdict:
        return 0
    print(
        f"Kill matrix, Hypothesis profile {args.profile!r}: up to {settings.max_examples} "
        f"examples per broker (the search stops at the first failure)"
    )
    print(table(rows))
    for problem in problems:
        print(f"not as expected: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
