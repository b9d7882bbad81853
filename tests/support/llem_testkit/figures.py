"""A runner that writes results with figures a test chooses, per configuration and cycle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.schema.config import ExperimentConfig
from harness.schema.result import Percentiles, Warning_
from harness.schema.run_spec import RunSpec
from llem_testkit.results import fake_result
from orchestrator.runners.base import EventCallback, Runner, RunOutcome

Figures = Callable[[ExperimentConfig, int], dict[str, float | None]]
"""(config, cycle) -> {"energy_j": 50.0, "tokens_per_s": 80.0, "p90_s": 0.2} (None: unmeasured)."""


class FigureWriter(Runner):
    """Writes a result whose energy, throughput and latency come from ``figures``.

    The run has 100 output tokens; ``energy_j`` None means no sensor (energy null, with the
    ``no_energy_sensor`` warning, as on a machine without GPUs); ``warnings`` adds codes.
    """

    name = "fake"

    def __init__(self, figures: Figures) -> None:
        super().__init__()
        self.figures = figures

    def run(self, run_dir: Path, timeout_s: float | None, on_event: EventCallback,
            gpus: list[int] | None = None) -> RunOutcome:
        spec = RunSpec.model_validate_json((run_dir / "experiment.json").read_text())
        wanted = self.figures(spec.config, spec.cycle)
        result = fake_result(spec, 1.0)
        energy_j = wanted.get("energy_j")
        tokens_per_s = wanted.get("tokens_per_s") or 50.0
        energy = result.energy.model_copy(update={
            "energy_j": energy_j, "energy_per_output_token_j": None if energy_j is None
            else energy_j / 100, "tokens_per_joule": None if energy_j is None else 100 / energy_j,
            "mean_power_w": None if energy_j is None else energy_j * tokens_per_s / 100})
        throughput = result.throughput.model_copy(update={
            "output_tokens_per_s": tokens_per_s, "duration_s": 100 / tokens_per_s})
        latency = result.latency
        if wanted.get("p90_s") is not None:
            p90 = float(wanted["p90_s"] or 0)
            latency = latency.model_copy(update={"e2e": Percentiles(
                mean_s=p90 / 2, p50_s=p90 / 2, p90_s=p90, p99_s=p90, count=4)})
        codes = [Warning_(code="no_energy_sensor", message="no sensor")] if energy_j is None else []
        result = result.model_copy(update={"energy": energy, "throughput": throughput,
                                           "latency": latency, "warnings": codes})
        (run_dir / "result.json").write_text(result.model_dump_json())
        return RunOutcome(end="ok", exit_code=0, message="")
