"""The mutant zoo: brokers with one realistic defect each, and correct brokers of other designs.

Every module here defines ONE broker class with the seed API (``bind_loop``, ``subscribe``,
``unsubscribe``, ``emit``, ``close``, ``n_subscribers``, ``is_done``); some also have the optional
features of the contract, found by signature: ``subscribe(run_id, last_event_id=None)`` and the
constructor keywords ``replay_size`` and ``max_backlog``. Every broker keeps its subscriber map
in ``self._subscribers`` (run id -> non-empty collection of that run's live subscribers).

- ``correct_*``: correct under every interleaving; the stateful suite must pass them.
- ``mutant_*``: a copy of a correct broker with ONE defect. The module docstring's first line
  states the defect; a line ``Caught by: <invariant>`` names the invariant that must catch it,
  and an optional line ``Also caught by: <invariant>, ...`` names others its failure can trip
  as well (a suite may report one of those first on some schedules).

The registry below is what the kill-matrix test parametrizes over. Docstrings are read from the
source files with ``ast``, without importing the brokers (importing one creates its locks).
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stateful.conformance import Conformance

#: The invariant names a mutant's ``Caught by:`` line may use.
INVARIANTS: tuple[str, ...] = (
    "no-lost-events",
    "order",
    "no-duplicates",
    "done-exactly-once-last",
    "nothing-after-done",
    "no-hang-after-done",
    "subscriber-map-cleanup",
    "replay-seam",
    "overflow-marker",
    "no-exception",
    "bounded-state",
    "deadlock",
)

_PACKAGE = __name__

#: Correct brokers: the suite must pass every one of them.
CORRECT: tuple[str, ...] = (
    f"{_PACKAGE}.correct_global_lock:GlobalLockBroker",
    f"{_PACKAGE}.correct_module_lock:ModuleLockBroker",
    f"{_PACKAGE}.correct_per_run_locks:PerRunLockBroker",
    f"{_PACKAGE}.correct_batch_replay:BatchReplayBroker",
    f"{_PACKAGE}.correct_pump_task:PumpTaskBroker",
    f"{_PACKAGE}.correct_per_subscriber_locks:PerSubscriberLockBroker",
    f"{_PACKAGE}.correct_coroutine_replay:CoroutineReplayBroker",
    f"{_PACKAGE}.correct_defaultdict_sets:DefaultdictSetBroker",
    f"{_PACKAGE}.correct_lazy_import_lock:LazyImportLockBroker",
    f"{_PACKAGE}.correct_split_modules:SplitModulesBroker",
    f"{_PACKAGE}.correct_actor_task:ActorTaskBroker",
    f"{_PACKAGE}.correct_rlock_reentry:RLockReentryBroker",
    f"{_PACKAGE}.correct_queue_subclass:QueueSubclassBroker",
    f"{_PACKAGE}.correct_time_retention:TimeRetentionBroker",
    f"{_PACKAGE}.correct_dispatcher_thread:DispatcherThreadBroker",
    f"{_PACKAGE}.correct_condition_dispatcher:ConditionDispatcherBroker",
    f"{_PACKAGE}.correct_executor_bridge:ExecutorBridgeBroker",
)

#: Mutants: the suite must fail each one with the invariant its docstring names.
MUTANTS: tuple[str, ...] = (
    f"{_PACKAGE}.mutant_original_design:OriginalRunBroker",
    f"{_PACKAGE}.mutant_close_marks_done_late:CloseMarksDoneLateBroker",
    f"{_PACKAGE}.mutant_emit_after_close:EmitAfterCloseBroker",
    f"{_PACKAGE}.mutant_close_twice_double_done:CloseTwiceDoubleDoneBroker",
    f"{_PACKAGE}.mutant_subscribe_check_then_act:SubscribeCheckThenActBroker",
    f"{_PACKAGE}.mutant_close_snapshot_unlocked:CloseSnapshotUnlockedBroker",
    f"{_PACKAGE}.mutant_unlocked_unsubscribe:UnlockedUnsubscribeBroker",
    f"{_PACKAGE}.mutant_empty_set_left:EmptySetLeftBroker",
    f"{_PACKAGE}.mutant_unsubscribe_drops_all:UnsubscribeDropsAllBroker",
    f"{_PACKAGE}.mutant_batch_lost_wakeup:BatchLostWakeupBroker",
    f"{_PACKAGE}.mutant_batch_pending_reset_late:BatchPendingResetLateBroker",
    f"{_PACKAGE}.mutant_batch_reversed:BatchReversedBroker",
    f"{_PACKAGE}.mutant_done_overtakes_batch:DoneOvertakesBatchBroker",
    f"{_PACKAGE}.mutant_unlocked_id_counter:UnlockedIdCounterBroker",
    f"{_PACKAGE}.mutant_replay_overlap:ReplayOverlapBroker",
    f"{_PACKAGE}.mutant_replay_hole:ReplayHoleBroker",
    f"{_PACKAGE}.mutant_overflow_silent_drop:OverflowSilentDropBroker",
    f"{_PACKAGE}.mutant_pump_idle_unlocked:PumpIdleUnlockedBroker",
    f"{_PACKAGE}.mutant_push_outside_lock:PushOutsideLockBroker",
    f"{_PACKAGE}.mutant_coroutine_live_lookup:CoroutineLiveLookupBroker",
    f"{_PACKAGE}.mutant_replay_gap_off_by_one:ReplayGapOffByOneBroker",
    f"{_PACKAGE}.mutant_shared_id_counter:SharedIdCounterBroker",
    f"{_PACKAGE}.mutant_overflow_drops_oldest:OverflowDropsOldestBroker",
    f"{_PACKAGE}.mutant_unsubscribe_by_equality:UnsubscribeByEqualityBroker",
    f"{_PACKAGE}.mutant_defaultdict_emit_leak:DefaultdictEmitLeakBroker",
    f"{_PACKAGE}.mutant_weakset_unsubscribe_by_gc:WeakSetUnsubscribeByGcBroker",
    f"{_PACKAGE}.mutant_put_from_producer_thread:PutFromProducerThreadBroker",
    f"{_PACKAGE}.mutant_run_lock_created_twice:RunLockCreatedTwiceBroker",
    f"{_PACKAGE}.mutant_split_modules_lock_race:SplitModulesLockRaceBroker",
    f"{_PACKAGE}.mutant_done_ids_kept:DoneIdsKeptBroker",
    f"{_PACKAGE}.mutant_run_locks_never_pruned:RunLocksNeverPrunedBroker",
    f"{_PACKAGE}.mutant_handles_kept:HandlesKeptBroker",
    f"{_PACKAGE}.mutant_flush_not_rearmed:FlushNotRearmedBroker",
    f"{_PACKAGE}.mutant_done_before_leftover:DoneBeforeLeftoverBroker",
    f"{_PACKAGE}.mutant_pending_trim_past_the_slowest:PendingTrimPastTheSlowestBroker",
    f"{_PACKAGE}.mutant_late_binding_closure:LateBindingClosureBroker",
    f"{_PACKAGE}.mutant_replay_greater_equal:ReplayGreaterEqualBroker",
    f"{_PACKAGE}.mutant_abba_lock_order:AbbaLockOrderBroker",
    f"{_PACKAGE}.mutant_eviction_before_done:EvictionBeforeDoneBroker",
    f"{_PACKAGE}.mutant_queuefull_swallowed:QueueFullSwallowedBroker",
    f"{_PACKAGE}.mutant_call_soon_from_producer:CallSoonFromProducerBroker",
    f"{_PACKAGE}.mutant_close_bypasses_dispatcher:CloseBypassesDispatcherBroker",
    f"{_PACKAGE}.mutant_two_dispatchers:TwoDispatchersBroker",
    f"{_PACKAGE}.mutant_condition_wait_if:ConditionWaitIfBroker",
    f"{_PACKAGE}.mutant_dispatcher_lost_wakeup:DispatcherLostWakeupBroker",
    f"{_PACKAGE}.mutant_call_soon_from_worker:CallSoonFromWorkerBroker",
)


@dataclass(frozen=True)
class ZooEntry:
    """One broker of the zoo."""

    impl: str  # "tests.mutants.module:Class", the --broker-impl / BROKER_IMPL format
    correct: bool
    defect: str  # first line of the module docstring
    invariant: str | None  # "Caught by:" (None for a correct broker)
    also: tuple[str, ...] = ()  # "Also caught by:"
    trace_modules: tuple[str, ...] = ()  # "Trace modules:", besides the one defining the class
    # The contract it is judged by (stateful.conformance); by default, the seed contract.
    conformance: Conformance = field(default_factory=Conformance)


def parse_caught_by(docstring: str) -> tuple[str, tuple[str, ...]]:
    """Return (``Caught by`` invariant, ``Also caught by`` invariants) of a mutant docstring.

    Raises ValueError unless there is exactly one ``Caught by:`` line naming exactly one known
    invariant, and every name on an ``Also caught by:`` line is known.
    """
    caught: list[str] = []
    also: list[str] = []
    for raw in docstring.splitlines():
        line = raw.strip()
        if line.startswith("Caught by:"):
            caught.append(line.removeprefix("Caught by:").strip())
        elif line.startswith("Also caught by:"):
            names = line.removeprefix("Also caught by:").split(",")
            also.extend(name.strip() for name in names if name.strip())
    if len(caught) != 1:
        raise ValueError(f"expected exactly one 'Caught by:' line, found {len(caught)}")
    unknown = [name for name in (caught[0], *also) if name not in INVARIANTS]
    if unknown:
        raise ValueError(f"unknown invariant name(s) {unknown}; known: {', '.join(INVARIANTS)}")
    return caught[0], tuple(also)


def module_name(impl: str) -> str:
    """``mutant_...`` or ``correct_...``: the name of the zoo module that defines ``impl``."""
    return impl.partition(":")[0].rpartition(".")[2]


def module_docstring(impl: str) -> str:
    """The module docstring of ``impl``'s module, read from source without importing it."""
    if not impl.partition(":")[0].startswith(_PACKAGE + "."):
        raise ValueError(f"{impl!r} is not in {_PACKAGE}")
    path = Path(__file__).with_name(module_name(impl) + ".py")
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    if not doc:
        raise ValueError(f"{path.name} has no module docstring")
    return doc


def parse_trace_modules(docstring: str) -> tuple[str, ...]:
    """The modules named on a ``Trace modules:`` line, to trace besides the defining one."""
    for raw in docstring.splitlines():
        line = raw.strip()
        if line.startswith("Trace modules:"):
            names = line.removeprefix("Trace modules:").split(",")
            return tuple(name.strip() for name in names if name.strip())
    return ()


def entry(impl: str) -> ZooEntry:
    """The registry entry of one broker, with its expectations parsed from its docstring."""
    doc = module_docstring(impl)
    defect = doc.splitlines()[0].strip()
    if module_name(impl).startswith("correct_"):
        if "Caught by:" in doc:
            raise ValueError(f"correct broker {impl} has a 'Caught by:' line")
        return ZooEntry(impl, True, defect, None, trace_modules=parse_trace_modules(doc))
    invariant, also = parse_caught_by(doc)
    return ZooEntry(impl, False, defect, invariant, also, parse_trace_modules(doc))


def zoo() -> list[ZooEntry]:
    """Every broker of the zoo: correct ones first, then the mutants."""
    return [entry(impl) for impl in (*CORRECT, *MUTANTS)]


def load_class(impl: str) -> type[Any]:
    """Import ``"package.module:Class"`` and return the class."""
    module, _, name = impl.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not isinstance(cls, type):
        raise TypeError(f"{impl} is not a class")
    return cls


#: mutant impl -> the invariant its docstring says must catch it.
EXPECTED: dict[str, str] = {e.impl: e.invariant for e in zoo() if e.invariant is not None}
