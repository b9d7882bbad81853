"""The runs of a study in execution order: cycles, interleaving, seeded shuffling."""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.paths import sanitize
from orchestrator.study import Study, StudyEntry

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
