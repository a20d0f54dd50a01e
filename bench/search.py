"""``python -m bench search [--seeds N] [--quick] [mutant ...]``: the suite's search power, as
examples to the first failure over several random seeds.

The kill matrix runs each mutant once, derandomized: one draw from a wide distribution, so one
number says little about whether a change to the scheduling strategy, the preemption
distribution or the operations made the search better. This runs each mutant (by default the zoo's
hardest races) in controlled mode under the ``ci`` profile, but with seeds 1..N instead of
derandomized, without shrinking, each in a new interpreter as the kill-matrix test does; it
prints per mutant how many seeds killed it within the profile's examples, the mean examples to
the first failure with its standard error, the worst, the mean and worst seconds (a survivor
counts with all the examples it ran) and each seed's count, so two versions can be compared on
the same seeds. Examples to a failure spread about as widely as their mean, so the standard
error is about the mean over the root of the number of seeds: a fifth of it with 20 seeds (the
default), nearly half with 5.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.table import aligned
from stateful.killmatrix import Outcome, measure_in_new_process
from tests.mutants import ZooEntry, module_name, zoo

PROFILE = "ci"

#: The races the ``ci`` profile finds within the fewest seeds or after the most examples.
HARDEST = (
    # A per-run lock made lazily by two threads at once: the machine finds it within 800 examples
    # for about half the seeds (the small-scope races find it every time).
    "mutant_run_lock_created_twice",
    "mutant_split_modules_lock_race",
    "mutant_batch_pending_reset_late",
    "mutant_done_overtakes_batch",
    "mutant_replay_hole",
    "mutant_push_outside_lock",
    "mutant_batch_lost_wakeup",
    "mutant_close_snapshot_unlocked",
)


@dataclass(frozen=True)
class Config:
    """The sizes of one benchmark run."""

    seeds: int = 20
    mutants: tuple[str, ...] = HARDEST


QUICK = Config(seeds=1, mutants=("mutant_original_design",))


@dataclass(frozen=True)
class Search:
    """One mutant's outcomes, one per seed."""

    entry: ZooEntry
    outcomes: tuple[Outcome, ...]

    def examples(self) -> list[int]:
        return [o.examples_to_failure or o.examples for o in self.outcomes]

    def seconds(self) -> list[float]:
        return [o.seconds_to_failure or o.seconds for o in self.outcomes]


def find(names: Sequence[str]) -> list[ZooEntry]:
    """The zoo entries named by module (``mutant_...``) or by spec, in the order given."""
    index = {}
    for entry in zoo():
        index[entry.impl] = index[module_name(entry.impl)] = entry
    unknown = [name for name in names if name not in index]
    if unknown:
        raise SystemExit(f"no broker {', '.join(unknown)} in tests.mutants")
    return [index[name] for name in names]


def run(config: Config) -> list[Search]:
    """Measure every mutant of ``config`` with every seed, each in a new interpreter."""
    searches = []
    for entry in find(config.mutants):
        outcomes = tuple(
            measure_in_new_process(entry.impl, PROFILE, seed=seed)
            for seed in range(1, config.seeds + 1)
        )
        searches.append(Search(entry, outcomes))
    return searches


def standard_error(values: Sequence[float]) -> float:
    """The standard error of the mean of ``values``, the typical distance between it and the
    mean over all seeds: the sample standard deviation over the root of the count (0 for one)."""
    if len(values) < 2:
        return 0.0
    return statistics.stdev(values) / math.sqrt(len(values))


def format_table(config: Config, searches: Sequence[Search]) -> str:
    """The printed report: a header line and one row per mutant."""
    rows = [
        (
            "mutant",
            "killed",
            "mean ex",
            "± s.e.",
            "worst ex",
            "mean s",
            "worst s",
            "examples per seed",
        )
    ]
    for search in searches:
        examples = search.examples()
        seconds = search.seconds()
        killed = sum(o.killed for o in search.outcomes)
        rows.append(
            (
                module_name(search.entry.impl),
                f"{killed}/{len(search.outcomes)}",
                f"{statistics.mean(examples):.1f}",
                f"{standard_error(examples):.1f}",
                f"{max(examples)}",
                f"{statistics.mean(seconds):.1f}",
                f"{max(seconds):.1f}",
                " ".join(str(o.examples_to_failure) if o.killed else "-" for o in search.outcomes),
            )
        )
    lines = aligned(rows, left=(0, len(rows[0]) - 1))
    header = (
        f"search: {PROFILE} profile with seeds 1-{config.seeds}, no shrinking; "
        f"Python {platform.python_version()} on {platform.machine()}"
    )
    footer = (
        "A survivor counts with the examples it ran, and shows as - per seed. "
        "s.e.: the standard error of the mean."
    )
    return "\n".join([header, "", *lines, "", footer])


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench search", description=__doc__)
    parser.add_argument("--seeds", type=int, default=Config.seeds, help="seeds 1..N")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("mutants", nargs="*", help="zoo module names or specs (default: hardest)")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else Config(args.seeds, tuple(args.mutants) or HARDEST)
    print(format_table(config, run(config)))
    return 0
