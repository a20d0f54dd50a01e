"""The pytest plugin: which broker to test, a seed chosen up front, and one line to reproduce.

Options:

``--broker-impl=module:Class``
    the implementation the stateful suite tests (default: ``BROKER_IMPL``, else
    ``broker:RunBroker``).
``--trace-module=NAME``
    another module whose lines are switch points and whose primitives are controlled
    (repeatable); the module defining the class always is.
``--watchdog=SECONDS``
    how long a managed thread may run before reaching its next switch point.
``--max-retained-runs=N``
    how many closed runs the bounded-state check lets a broker keep when its constructor takes
    no retention parameter (``stateful.boundedstate``).
``--broker-items=module:function``
    a predicate ``is_noise(item) -> bool``: the extra items (keep-alives, greetings) the broker
    may send before ``done`` (``stateful.conformance``).
``--broker-history=none|all``
    whether a new subscriber first gets every event of the run so far (``all``).

When the Hypothesis profile is not derandomized, a seed is chosen up front (or taken from
``--hypothesis-seed``), shown in the header, and given to every stateful test through the
``stateful_seed`` fixture. After the run, each failed test marked ``stateful`` gets a line
``REPRO: pytest '<node id>' ...`` in the terminal summary that reruns it with the same
implementation, options and generation: the profile alone for a derandomized profile, else the
seed (with the ``repro`` profile in place of ``dev``: same sizes, verbose, no database). A
failure that ``dev`` replayed from the local example database was found under an earlier seed;
the ``@reproduce_failure`` blob Hypothesis prints beside it reproduces any failure exactly.
The free-running stress test gets the same line, labelled as not deterministic. The header and
the line carry the declared contract (``--broker-items``, ``--broker-history``) too. A broker in
which the cleanup check found no subscriber map is named once, at the end of the run.
"""

from __future__ import annotations

import random
import shlex
from collections.abc import Generator

import pytest
from hypothesis import settings as hypothesis_settings

from stateful import config as suite_config
from stateful.config import DEFAULT_MAX_RETAINED_RUNS
from stateful.conformance import HISTORY_CHOICES, Conformance
from stateful.impl import configured_spec
from stateful.introspect import DISCOVERIES, no_map_note
from stateful.runtime import DEFAULT_WATCHDOG_SECONDS

_failed: list[tuple[str, bool]] = []
_state: dict[str, object] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("stateful", "the runbroker stateful suite")
    group.addoption(
        "--broker-impl",
        default=None,
        metavar="module:Class",
        help="broker class the stateful suite tests (default: $BROKER_IMPL or broker:RunBroker)",
    )
    group.addoption(
        "--trace-module",
        action="append",
        default=[],
        metavar="NAME",
        help="another module to trace and control, beside the one defining the class",
    )
    group.addoption(
        "--watchdog",
        type=float,
        default=DEFAULT_WATCHDOG_SECONDS,
        metavar="SECONDS",
        help="fail a thread that runs this long without reaching a switch point",
    )
    group.addoption(
        "--max-retained-runs",
        type=int,
        default=DEFAULT_MAX_RETAINED_RUNS,
        metavar="N",
        help="closed runs a broker without a retention parameter may keep (bounded-state check)",
    )
    group.addoption(
        "--broker-items",
        default=None,
        metavar="module:function",
        help="predicate is_noise(item) -> bool: extra items the broker may send before done",
    )
    group.addoption(
        "--broker-history",
        choices=HISTORY_CHOICES,
        default=HISTORY_CHOICES[0],
        help="whether a new subscriber first gets every event of the run so far (default: none)",
    )


# After Hypothesis's own plugin, so that the profile ``--hypothesis-profile`` names is loaded.
@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    _failed.clear()
    watchdog = config.getoption("watchdog")
    if watchdog <= 0:
        raise pytest.UsageError(f"--watchdog must be a positive number of seconds, not {watchdog}")
    suite_config.settings.broker_impl = config.getoption("broker_impl")
    suite_config.settings.trace_modules = tuple(config.getoption("trace_module"))
    suite_config.settings.watchdog_seconds = watchdog
    max_retained_runs = config.getoption("max_retained_runs")
    if max_retained_runs < 0:
        raise pytest.UsageError(f"--max-retained-runs must be >= 0, not {max_retained_runs}")
    suite_config.settings.max_retained_runs = max_retained_runs
    try:
        suite_config.load_impl()
    except (ImportError, ValueError) as error:
        raise pytest.UsageError(f"--broker-impl / BROKER_IMPL: {error}") from error
    conformance = Conformance(config.getoption("broker_items"), config.getoption("broker_history"))
    try:
        conformance.noise_predicate()
    except (ImportError, ValueError) as error:
        raise pytest.UsageError(f"--broker-items: {error}") from error
    suite_config.settings.conformance = conformance
    _state["profile"] = (
        config.getoption("hypothesis_profile", None)
        or hypothesis_settings.get_current_profile_name()
    )
    if hypothesis_settings().derandomize:
        _state["seed"] = None
        return
    given = config.getoption("hypothesis_seed", None)
    if given is None:
        _state["seed"] = random.SystemRandom().randrange(2**32)
        return
    try:
        _state["seed"] = int(given)
    except ValueError:
        raise pytest.UsageError(f"--hypothesis-seed must be an integer, not {given!r}") from None


def pytest_report_header(config: pytest.Config) -> str:
    seed = _state.get("seed")
    chosen = "derandomized" if seed is None else f"--hypothesis-seed={seed}"
    conformance = suite_config.settings.conformance
    declared = "" if conformance == Conformance() else f" ({conformance})"
    return (
        f"stateful: broker {configured_spec(config.getoption('broker_impl'))}{declared}, "
        f"hypothesis profile {_state.get('profile')}, {chosen}"
    )


@pytest.fixture
def stateful_seed() -> int | None:
    """The seed every stateful test uses, or None under a derandomized profile."""
    seed = _state.get("seed")
    return seed if isinstance(seed, int) else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when == "call" and item.get_closest_marker("stateful"):
        _failed.append((item.nodeid, item.get_closest_marker("stress") is not None))


def repro_command(nodeid: str, config: pytest.Config) -> str:
    """The command that reruns ``nodeid`` exactly as it just ran."""
    seed = _state.get("seed")
    profile = str(_state.get("profile"))
    parts = ["pytest", nodeid]
    if seed is None:
        parts.append(f"--hypothesis-profile={profile}")
    else:
        # Same generation settings as the failing run, but no database and verbose.
        parts.append(f"--hypothesis-profile={'repro' if profile == 'dev' else profile}")
        parts.append(f"--hypothesis-seed={seed}")
    parts.append(f"--broker-impl={configured_spec(config.getoption('broker_impl'))}")
    parts.extend(f"--trace-module={name}" for name in config.getoption("trace_module"))
    watchdog = config.getoption("watchdog")
    if watchdog != DEFAULT_WATCHDOG_SECONDS:
        parts.append(f"--watchdog={watchdog}")
    max_retained_runs = config.getoption("max_retained_runs")
    if max_retained_runs != DEFAULT_MAX_RETAINED_RUNS:
        parts.append(f"--max-retained-runs={max_retained_runs}")
    parts.extend(suite_config.settings.conformance.options())
    return shlex.join(parts)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for spec in DISCOVERIES.unmapped():
        terminalreporter.write_line(f"stateful: {no_map_note(spec)}")
    for nodeid, free_running in _failed:
        # Free-running threads are not scheduled by the suite: the same seed draws the same
        # steps, but the interleaving is up to the OS, so the line may need several runs.
        label = "REPRO (free-running, not deterministic)" if free_running else "REPRO"
        terminalreporter.write_line(f"{label}: {repro_command(nodeid, terminalreporter.config)}")
