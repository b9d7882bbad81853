"""The runs of a study in execution order, and the fixed pauses between them.

Cycles, interleaving, seeded shuffling; ``config_gap_s`` and ``cycle_gap_s`` (:class:`Gaps`).
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from harness.paths import sanitize
from orchestrator.study import ExecutionConfig, Study, StudyEntry

RunKey = tuple[str, int]
"""What identifies a run: its measurement config hash and its cycle."""


@dataclass(frozen=True)
class PlannedRun:
    """One (configuration, cycle) in execution order."""

    entry: StudyEntry
    number: int
    cycle: int

    @property
    def key(self) -> RunKey:
        """The run's identity: (measurement config hash, cycle); its name is only a label."""
        return self.entry.config.measurement_config_hash, self.cycle

    @property
    def label(self) -> str:
        """The configuration's part of a run directory's name: ``<NNN>_<slug>``."""
        return f"{self.number:03d}_{sanitize(self.entry.slug)[:48]}"

    @property
    def run_id(self) -> str:
        """Directory name in a new study: ``<NNN>_<slug>_c<cycle>``.

        A resumed study keeps the names its manifest gave (``orchestrator.study_dir``).
        """
        return f"{self.label}_c{self.cycle}"


def plan(study: Study, cycles: int | None = None) -> list[PlannedRun]:
    """Order the runs by ``execution.cycle_order`` (shuffled is seeded per cycle)."""
    execution = study.execution
    n_cycles = cycles or execution.n_cycles
    numbered = [(index + 1, entry) for index, entry in enumerate(study.experiments)]
    if execution.cycle_order == "sequential":
        return [PlannedRun(e, n, c) for n, e in numbered for c in range(1, n_cycles + 1)]
    runs: list[PlannedRun] = []
    for cycle in range(1, n_cycles + 1):
        order = list(numbered)
        if execution.cycle_order == "shuffled":
            random.Random(execution.shuffle_seed * 1000 + cycle).shuffle(order)  # noqa: S311
        runs.extend(PlannedRun(e, n, cycle) for n, e in order)
    return runs


class Gaps:
    """The fixed pause between two consecutive runs of a plan.

    The one rule: the executor waits by it and the dry-run estimate counts by it.

    ``config_gap_s`` is the pause between two runs; ``cycle_gap_s`` takes its place where the
    pause separates two cycles, that is where every run of the plan before it is of an earlier
    cycle than every run after it. Interleaved and shuffled orders have such a place after each
    cycle; sequential order (all cycles of one configuration, then the next) has none once
    there are two configurations, since its cycles run side by side; with one configuration
    every pause separates two cycles, in every order.
    """

    def __init__(self, runs: Sequence[PlannedRun], execution: ExecutionConfig) -> None:
        self.runs = runs
        self.execution = execution
        cycles = [run.cycle for run in runs]
        earlier = list(itertools.accumulate(cycles, max))
        later = list(itertools.accumulate(reversed(cycles), min))[::-1]
        # position k: the runs before k are all of earlier cycles than the runs from k on
        self._cycle_ends = [k for k in range(1, len(runs)) if earlier[k - 1] < later[k]]

    def between(self, before: int, after: int) -> float:
        """The pause (s) before ``runs[after]`` when ``runs[before]`` ran last.

        The runs between the two positions are not run (on a resume: completed); the pause
        is ``cycle_gap_s`` when it separates two cycles anywhere in that stretch.
        """
        if not 0 <= before < after < len(self.runs):
            raise ValueError(f"no pause between positions {before} and {after} of the plan")
        end = bisect.bisect_right(self._cycle_ends, before)
        if end < len(self._cycle_ends) and self._cycle_ends[end] <= after:
            return self.execution.cycle_gap_s
        return self.execution.config_gap_s

    def waits(self, positions: Sequence[int]) -> list[float]:
        """The pauses (s) between the runs at ``positions`` of the plan, run in that order."""
        return [self.between(before, after) for before, after in itertools.pairwise(positions)]

    def total_s(self) -> float:
        """Every pause (s) of the whole plan run in order."""
        return sum(self.waits(range(len(self.runs))))


def lanes(runs: Sequence[PlannedRun], count: int) -> list[int]:
    """The lane (0 .. ``count`` - 1) of each run of the plan, for a runner with lanes.

    A lane is one chain of runs, one after another in the plan's order (on one node, with the
    Slurm runner's ``nodes``). With at least as many cycles as lanes, whole cycles are dealt
    out (cycle k to lane k mod ``count``): each lane then runs every configuration, in the
    plan's order within a cycle, so configurations are compared on the same node. With fewer
    cycles, the runs are dealt out one by one in plan order.
    """
    if count <= 1:
        return [0] * len(runs)
    cycles = sorted({run.cycle for run in runs})
    if len(cycles) >= count:
        index = {cycle: number for number, cycle in enumerate(cycles)}
        return [index[run.cycle] % count for run in runs]
    return [position % count for position in range(len(runs))]
