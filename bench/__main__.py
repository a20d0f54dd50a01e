"""``python -m bench <benchmark> [--quick]``: ``fanout`` (the broker against the in-loop floor and
the original design), ``load`` (many subscribers, many events, default settings: nothing lost),
``scheduler`` (the stateful suite's deterministic scheduler), ``search`` (how many examples the
suite needs to catch its hardest mutants) or ``tracing`` (``sys.settrace`` against
``sys.monitoring`` for the scheduler's switch points)."""

from __future__ import annotations

import sys

from bench import fanout, load, scheduler, search, tracing

BENCHMARKS = {
    "fanout": fanout.main,
    "load": load.main,
    "scheduler": scheduler.main,
    "search": search.main,
    "tracing": tracing.main,
}


def main(argv: list[str]) -> int:
    """Dispatch to the benchmark named by the first argument."""
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: python -m bench {{{','.join(BENCHMARKS)}}} [--quick]", file=sys.stderr)
        return 2
    return BENCHMARKS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
