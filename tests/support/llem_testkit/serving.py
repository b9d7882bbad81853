"""Serving-mode results with figures a test chooses, and a study that sweeps the request rate.

A serving run's result carries ``serving`` (the offered load and the steady-state window's
figures) besides the offline sections; the harness fills ``latency`` from the same window
(reference point ``arrival``). Here a 60 s window receives ``request_rate`` x 60 requests;
a saturated run completes 70 % of them (below the 90 % rule), an unsaturated one all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.schema.config import ExperimentConfig
from harness.schema.result import (
    ExperimentResult,
    LatencyMetrics,
    Percentiles,
    ServingMetrics,
    ThroughputMetrics,
    Warning_,
)
from harness.schema.run_spec import RunSpec
from llem_testkit.results import fake_result
from orchestrator.runners.base import EventCallback, Runner, RunOutcome

WINDOW_S = 60.0
TOKENS_PER_REQUEST = 100
SATURATED_SHARE = 0.7
"""Achieved / offered rate of a saturated run (the harness's rule: below 0.9)."""


@dataclass(frozen=True)
class ServingFigures:
    """What one serving run measured.

    Attributes:
        j_per_token: energy per output token (J); None: no sensor (every energy field null,
            ``no_energy_sensor``, as on a machine without GPUs).
        ttft_p90_s: 90th percentile time to first token, from arrival (s).
        tpot_p90_s: 90th percentile time per output token (s).
        saturated: the engine did not keep up (achieved 70 % of the offered rate).
        goodput_share: share of the window's requests that met the SLOs; None: no ``slo:``.
        warnings: more warning codes the run carries (``thermal_drift`` leaves it out of the
            statistics).
    """

    j_per_token: float | None
    ttft_p90_s: float
    tpot_p90_s: float
    saturated: bool = False
    goodput_share: float | None = None
    warnings: tuple[str, ...] = ()


def _percentiles(p90_s: float) -> Percentiles:
    return Percentiles(mean_s=p90_s * 0.6, p50_s=p90_s * 0.5, p90_s=p90_s, p99_s=p90_s * 1.5,
                       count=10)


def serving_metrics(rate_rps: float, figures: ServingFigures) -> ServingMetrics:
    """The ``serving`` section of a run at ``rate_rps`` with ``figures``."""
    offered = rate_rps
    achieved = offered * (SATURATED_SHARE if figures.saturated else 1.0)
    arrived = round(offered * WINDOW_S)
    return ServingMetrics(
        client="in_process", arrival="poisson", request_rate_rps=rate_rps, seed=42,
        ramp_up_s=5.0, window_s=WINDOW_S, drain_s=2.0, requests_total=arrived + 10,
        requests_in_window=arrived, requests_completed_in_window=round(achieved * WINDOW_S),
        requests_failed=0, offered_rate_rps=offered, sent_rate_rps=offered,
        achieved_rate_rps=achieved,
        output_tokens_in_window=round(achieved * WINDOW_S) * TOKENS_PER_REQUEST,
        output_tokens_per_s=achieved * TOKENS_PER_REQUEST,
        ttft=_percentiles(figures.ttft_p90_s), tpot=_percentiles(figures.tpot_p90_s),
        e2e=_percentiles(figures.ttft_p90_s + TOKENS_PER_REQUEST * figures.tpot_p90_s),
        slo_ttft_ms=None if figures.goodput_share is None else 500.0,
        goodput_rps=None if figures.goodput_share is None else offered * figures.goodput_share,
        slo_attainment=figures.goodput_share, saturated=figures.saturated,
        saturation_reason=("achieved_rate_rps below 90 % of offered_rate_rps"
                           if figures.saturated else None))


def serving_result(spec: RunSpec, figures: ServingFigures) -> ExperimentResult:
    """What the harness would write for a serving ``spec`` that measured ``figures``."""
    rate_rps = spec.config.load.request_rate
    if rate_rps is None:
        raise ValueError(f"{spec.run_id} is not a serving run (load.request_rate unset)")
    serving = serving_metrics(rate_rps, figures)
    result = fake_result(spec, 1.0)
    tokens = serving.output_tokens_in_window
    energy_j = None if figures.j_per_token is None else figures.j_per_token * tokens
    energy = result.energy.model_copy(update={
        "energy_j": energy_j, "energy_per_output_token_j": figures.j_per_token,
        "tokens_per_joule": None if energy_j is None else tokens / energy_j,
        "mean_power_w": None if energy_j is None else energy_j / WINDOW_S, "host": None})
    throughput = ThroughputMetrics(
        input_tokens=serving.requests_in_window * 50, output_tokens=tokens,
        requests=serving.requests_completed_in_window, duration_s=WINDOW_S,
        output_tokens_per_s=serving.output_tokens_per_s,
        requests_per_s=serving.achieved_rate_rps)
    latency = LatencyMetrics(reference_point="arrival", e2e=serving.e2e, ttft=serving.ttft,
                             tpot=serving.tpot)
    warnings = ([] if energy_j is not None
                else [Warning_(code="no_energy_sensor", message="no NVIDIA GPU was found")])
    warnings += [Warning_(code=code, message="set by the test") for code in figures.warnings]
    return result.model_copy(update={"energy": energy, "throughput": throughput,
                                     "latency": latency, "serving": serving,
                                     "warnings": warnings})


ServingScript = Callable[[ExperimentConfig, int], ServingFigures]
"""(config, cycle) -> what that run measured."""


class ServingRunWriter(Runner):
    """Writes each run's result.json with the figures ``script`` gives its config and cycle."""

    name = "fake"

    def __init__(self, script: ServingScript) -> None:
        super().__init__()
        self.script = script

    def run(self, run_dir: Path, timeout_s: float | None, on_event: EventCallback,
            gpus: list[int] | None = None) -> RunOutcome:
        spec = RunSpec.model_validate_json((run_dir / "experiment.json").read_text())
        result = serving_result(spec, self.script(spec.config, spec.cycle))
        (run_dir / "result.json").write_text(result.model_dump_json())
        return RunOutcome(end="ok", exit_code=0, message="")


SERVING_STUDY = """\
name: serve
model: m
backend: [vllm, tensorrt]
load: {mode: serving, request_rate: 1}
execution: {n_cycles: 3, config_gap_s: 0, cycle_gap_s: 0}
sweep:
  load.request_rate: [1, 2, 4, 8]
  vllm.max_num_seqs: [1, 64]
"""
"""Three lines of four rates each: vLLM at 1 and at 64 sequences, and TensorRT-LLM."""


def serving_study(folder: Path, script: ServingScript, text: str = SERVING_STUDY) -> Path:
    """Run ``text`` (a study file) with :class:`ServingRunWriter`; return the study directory."""
    from orchestrator import run_study

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "study.yaml").write_text(text)
    _, study_dir = run_study(folder / "study.yaml", ServingRunWriter(script),
                             output=folder / "out", no_gaps=True)
    return study_dir
