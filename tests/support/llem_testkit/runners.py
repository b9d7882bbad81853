"""A runner that stands in for the harness, for tests of the host's bookkeeping."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.schema.headline import HEADLINE_METRICS
from harness.schema.result import ExperimentResult
from harness.schema.run_spec import RunSpec
from llem_testkit.results import fake_result
from orchestrator.runners.base import EventCallback, Runner, RunOutcome

METRICS_BY_NAME = {metric.name: metric for metric in HEADLINE_METRICS}


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


class ScriptedResults(Runner):
    """Writes results whose headline metrics take the values a function gives for each run.

    Every other field is :func:`fake_result`'s (energy 100 J for 100 tokens in 2 s).

    Attributes:
        values: run -> ``{headline metric name: value}`` to write into its result.
        environment: fields of the result's ``environment`` to set (``driver_version``, ...).
    """

    name = "fake"

    def __init__(self, values: Callable[[RunSpec], Mapping[str, float]],
                 environment: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.values = values
        self.environment = dict(environment or {})

    def run(self, run_dir: Path, timeout_s: float | None, on_event: EventCallback,
            gpus: list[int] | None = None) -> RunOutcome:
        spec = RunSpec.model_validate_json((run_dir / "experiment.json").read_text())
        result = fake_result(spec, 100.0).model_dump(mode="json")
        for name, value in self.values(spec).items():
            node = result
            *parents, leaf = METRICS_BY_NAME[name].path
            for step in parents:
                if node.get(step) is None:
                    node[step] = {}
                node = node[step]
            node[leaf] = value
        result["environment"].update(self.environment)
        (run_dir / "result.json").write_text(
            ExperimentResult.model_validate(result).model_dump_json())
        return RunOutcome(end="ok", exit_code=0, message="")
