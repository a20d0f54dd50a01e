"""Hypothesis profiles for the whole project, and the stateful suite's pytest plugin.

The profile comes from ``--hypothesis-profile``, else ``HYPOTHESIS_PROFILE``, else ``dev``:

``dev``      quick and random, with the local example database, so a failure found once is
             tried first next time;
``ci``       derandomized, so the gate gives the same verdict for the same code; no database;
``nightly``  random, 20 times the examples of ``ci``, database on, for scheduled runs;
``repro``    the generation settings of ``dev`` without derandomizing, so ``--hypothesis-seed``
             replays a run exactly; verbose; no database.

Every profile prints the ``@reproduce_failure`` blob of a failure (``print_blob``).

``stateful.plugin`` adds ``--broker-impl`` and the ``REPRO:`` line. The rest of the pytest
set-up is in ``pyproject.toml``: pytest-timeout's backstop (thread method, so a hang anywhere
ends the run with every thread's stack) and the warning filters that make an exception in any
thread, or an unraisable one, fail the test during which it happened.
"""

import os

import pytest
from hypothesis import HealthCheck, Verbosity, settings

pytest_plugins = ["stateful.plugin"]

CI_EXAMPLES = 800

# Built on Hypothesis's own "default" profile: on a machine that sets ``CI``, Hypothesis loads its
# built-in derandomized profile at import, and a profile built on that would silently inherit
# ``derandomize=True`` and ``database=None``, so ``dev`` and ``nightly`` would stop being random.
_common = settings(
    settings.get_profile("default"),
    deadline=None,
    print_blob=True,
    report_multiple_bugs=False,
    stateful_step_count=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", _common, max_examples=60)
settings.register_profile("ci", _common, max_examples=CI_EXAMPLES, derandomize=True, database=None)
settings.register_profile("nightly", _common, max_examples=20 * CI_EXAMPLES)
settings.register_profile(
    "repro", _common, max_examples=60, database=None, verbosity=Verbosity.verbose
)
PROFILES = ("dev", "ci", "nightly", "repro")

_chosen = os.environ.get("HYPOTHESIS_PROFILE", "dev")
if _chosen not in PROFILES:
    raise pytest.UsageError(
        f"HYPOTHESIS_PROFILE={_chosen!r} is not a profile of this project: {', '.join(PROFILES)}"
    )
settings.load_profile(_chosen)
