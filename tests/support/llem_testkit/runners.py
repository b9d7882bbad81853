"""A runner that stands in for the harness, for tests of the host's bookkeeping."""

from __future__ import annotations

from pathlib import Path

from harness.schema.run_spec import RunSpec
from llem_testkit.results import fake_result
from orchestrator.runners.base import EventCallback, Runner, RunOutcome


class ResultWriter(Runner):
    """Writes a valid result.json for every run it is given, or fails the run ids it is told.

    Attributes:
        ran: the RunSpec of every run it was given, in order.
    """

    name = "fake"

    def __init__(self, fail: tuple[str, ...] = (), name: str = "fake") -> None:
        super().__init__()
        self.name = name  # enters each result's runner, so another name is another environment
        self.fail = fail
        self.ran: list[RunSpec] = []

    def run(self, run_dir: Path, timeout_s: float | None, on_event: EventCallback,
            gpus: list[int] | None = None) -> RunOutcome:
        spec = RunSpec.model_validate_json((run_dir / "experiment.json").read_text())
        self.ran.append(spec)
        if spec.run_id in self.fail:
            return RunOutcome(end="error", exit_code=1, message="failed on purpose")
        energy_j = 100.0 + spec.cycle + len(self.ran) / 1000
        (run_dir / "result.json").write_text(fake_result(spec, energy_j).model_dump_json())
        return RunOutcome(end="ok", exit_code=0, message="")
