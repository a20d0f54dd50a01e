"""The suite's run-time configuration, set by the pytest plugin from the command line.

``settings`` holds what the command line chose (the implementation, extra traced modules, the
watchdog, the step budget, how many closed runs a broker without a retention parameter may
keep, and the broker's declared conformance profile, ``stateful.conformance``); ``load_impl``
turns an implementation spec into a loaded ``BrokerImpl``, once per spec.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from stateful.conformance import Conformance
from stateful.impl import BrokerImpl, configured_spec, load
from stateful.runtime import DEFAULT_MAX_STEPS, DEFAULT_WATCHDOG_SECONDS

#: Closed runs a broker whose constructor takes no retention parameter may keep: the bounded-state
#: check's limit for it unless ``--max-retained-runs`` says otherwise.
DEFAULT_MAX_RETAINED_RUNS = 1000


@dataclass
class Settings:
    broker_impl: str | None = None
    trace_modules: tuple[str, ...] = ()
    watchdog_seconds: float = DEFAULT_WATCHDOG_SECONDS
    max_steps: int = DEFAULT_MAX_STEPS
    max_retained_runs: int = DEFAULT_MAX_RETAINED_RUNS
    conformance: Conformance = field(default_factory=Conformance)


settings = Settings()


def load_impl(spec: str | None = None, trace_modules: tuple[str, ...] = ()) -> BrokerImpl:
    """``spec``, or the configured implementation when it is None, tracing ``trace_modules``
    besides the configured ones."""
    modules = tuple(dict.fromkeys((*settings.trace_modules, *trace_modules)))
    return _load(spec or configured_spec(settings.broker_impl), modules)


@functools.cache
def _load(spec: str, trace_modules: tuple[str, ...]) -> BrokerImpl:
    return load(spec, trace_modules)
