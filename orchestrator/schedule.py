"""The runs of a study in execution order: cycles, interleaving, seeded shuffling."""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.paths import sanitize
from orchestrator.study import Study, StudyEntry


@dataclass(frozen=True)
class PlannedRun:
    """One (configuration, cycle) in execution order."""

    entry: StudyEntry
    number: int
    cycle: int

    @property
    def run_id(self) -> str:
        """Directory name: ``<NNN>_<slug>_c<cycle>``."""
        return f"{self.number:03d}_{sanitize(self.entry.slug)[:48]}_c{self.cycle}"


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
