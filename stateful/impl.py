"""Which broker class the suite tests, and what it can do.

The implementation is named ``package.module:Class`` (by ``--broker-impl``, else the
``BROKER_IMPL`` environment variable, else ``broker:RunBroker``). Any class with the seed API
(``bind_loop``, ``subscribe``, ``unsubscribe``, ``emit``, ``close``, ``n_subscribers``,
``is_done``) can be tested. Features beyond the seed API are detected from signatures, and
exercised only where present:

* replay: ``subscribe`` accepts ``last_event_id``;
* a bounded replay buffer: the constructor accepts ``replay_size``;
* a slow-consumer limit: the constructor accepts ``max_backlog``;
* a clock: the constructor accepts ``clock``. It gets one that stands still, since the scheduler
  gives threads no time: what such a broker does (a stalled loop told by time, runs forgotten
  by age) then depends on the schedule alone, and an example replays exactly.

The modules under test are traced (every line is a switch point) and get controlled primitives:
by default the module that defines the class; more can be named with ``--trace-module``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import types
from dataclasses import dataclass, field
from typing import Any

DEFAULT_IMPL = "broker:RunBroker"
SEED_API = ("bind_loop", "subscribe", "unsubscribe", "emit", "close", "n_subscribers", "is_done")
# Small limits make gaps and overflows reachable within a few steps.
SMALL_REPLAY_SIZE = 4
SMALL_MAX_BACKLOG = 4


@dataclass(frozen=True)
class BrokerImpl:
    """A loaded implementation: its class, its features and the modules it is made of."""

    spec: str
    cls: type[Any]
    modules: tuple[types.ModuleType, ...]
    replay: bool
    replay_size: int | None
    max_backlog: int | None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(os.path.normcase(m.__file__) for m in self.modules if m.__file__)

    def new(self) -> Any:
        return self.cls(**self.kwargs)


def standing_clock() -> float:
    """The time a broker under test reads: always the same."""
    return 0.0


def load(spec: str, extra_modules: tuple[str, ...] = ()) -> BrokerImpl:
    """Import ``module:Class`` and detect its features; raise ``ValueError`` with a clear
    message when the spec is malformed or the class lacks part of the seed API."""
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"broker implementation {spec!r} is not of the form 'module:Class'")
    module = importlib.import_module(module_name)
    try:
        cls: Any = getattr(module, class_name)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {class_name!r}") from None
    if not isinstance(cls, type):
        raise ValueError(f"{spec!r} is not a class")
    missing = [name for name in SEED_API if not callable(getattr(cls, name, None))]
    if missing:
        raise ValueError(f"{spec!r} lacks the seed API method(s): {', '.join(missing)}")
    defining = sys.modules[cls.__module__]
    modules = (defining, *(importlib.import_module(name) for name in extra_modules))
    init_params = inspect.signature(cls).parameters
    subscribe: Any = getattr(cls, "subscribe", None)
    subscribe_params = inspect.signature(subscribe).parameters
    kwargs: dict[str, Any] = {}
    if "replay_size" in init_params:
        kwargs["replay_size"] = SMALL_REPLAY_SIZE
    if "max_backlog" in init_params:
        kwargs["max_backlog"] = SMALL_MAX_BACKLOG
    if "clock" in init_params:
        kwargs["clock"] = standing_clock
    return BrokerImpl(
        spec=spec,
        cls=cls,
        modules=tuple(dict.fromkeys(modules)),
        replay="last_event_id" in subscribe_params,
        replay_size=kwargs.get("replay_size"),
        max_backlog=kwargs.get("max_backlog"),
        kwargs=kwargs,
    )


def configured_spec(option: str | None) -> str:
    """The implementation to test: the command-line option, else ``BROKER_IMPL``, else ours."""
    return option or os.environ.get("BROKER_IMPL") or DEFAULT_IMPL
