"""The suite's run-time configuration, set by the pytest plugin from the command line.

``settings`` holds what the command line chose (the implementation, extra traced modules, the
watchdog and the step budget); ``load_impl`` turns an implementation spec into a loaded
``BrokerImpl``, once per spec.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from stateful.impl import BrokerImpl, configured_spec, load
from stateful.runtime import DEFAULT_MAX_STEPS, DEFAULT_WATCHDOG_SECONDS


@dataclass
class Settings:
    broker_impl: str | None = None
    trace_modules: tuple[str, ...] = ()
    watchdog_seconds: float = DEFAULT_WATCHDOG_SECONDS
    max_steps: int = DEFAULT_MAX_STEPS


settings = Settings()


def load_impl(spec: str | None = None, trace_modules: tuple[str, ...] = ()) -> BrokerImpl:
    """``spec``, or the configured implementation when it is None, tracing ``trace_modules``
    besides the configured ones."""
    modules = tuple(dict.fromkeys((*settings.trace_modules, *trace_modules)))
    return _load(spec or configured_spec(settings.broker_impl), modules)


@functools.cache
def _load(spec: str, trace_modules: tuple[str, ...]) -> BrokerImpl:
    return load(spec, trace_modules)
