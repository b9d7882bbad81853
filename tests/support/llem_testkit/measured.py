"""A runner that writes what a measured run leaves: result.json and timeseries.parquet.

The figures follow a simple, known model of a GPU so that reports have something to show:
the figures of :data:`FIGURES` per backend and batch size, fp16 faster but a little dearer per
token than bf16. The time series is what the harness's sampler
writes: a marker row at each phase start and one row per GPU per tick, power and temperature
rising through load and warmup. ``gpus=0`` plays a CPU machine: markers only, every energy field
null with the ``no_energy_sensor`` warning, as the harness writes it without a sensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.energy.device import GpuSample
from harness.schema.config import ExperimentConfig
from harness.schema.result import (
    BaselineRecord,
    EnergyMetrics,
    Environment,
    ExperimentResult,
    GpuInfo,
    LatencyMetrics,
    Percentiles,
    PhaseEnergy,
    ThroughputMetrics,
    WarmupRecord,
    Warning_,
)
from harness.schema.run_spec import RunSpec
from harness.timeseries import TimeSeriesWriter
from orchestrator.runners.base import EventCallback, Runner, RunOutcome

IDLE_POWER_W = 60.0
OUTPUT_TOKENS = 2000
TICK_S = 0.1
# (phase, seconds) in the order the harness enters them; "measure" lasts the window.
PHASES = (("preflight", 0.3), ("baseline", 2.0), ("load", 3.0), ("warmup", 2.0),
          ("measure", None), ("prefill_pass", 1.0), ("write", 0.2))
# (backend, batch size or max_num_seqs) -> (output tokens/s, J/token, e2e p90 s) at bf16.
# vLLM at 8 sequences and at 64 are both on the J/token-throughput front; PyTorch is not.
FIGURES = {("pytorch", 1): (40.0, 3.0, 2.5), ("pytorch", 4): (120.0, 1.6, 4.0),
           ("vllm", 8): (110.0, 1.2, None), ("vllm", 64): (400.0, 1.4, None)}


@dataclass(frozen=True)
class Profile:
    """The known figures of one configuration, before cycle noise."""

    power_w: float
    tokens_per_s: float
    latency_p90_s: float | None


def profile(config: ExperimentConfig) -> Profile:
    """Power, throughput and latency of a configuration: :data:`FIGURES`, fp16 10 % faster
    at 5 % more energy per token (a trade-off, so both precisions can be on a front)."""
    if config.backend == "vllm":
        batch = config.vllm.max_num_seqs if config.vllm and config.vllm.max_num_seqs else 8
    else:
        batch = config.pytorch.batch_size if config.pytorch and config.pytorch.batch_size else 1
    tokens_per_s, j_per_token, latency_s = FIGURES[(config.backend, batch)]
    if config.precision == "fp16":
        tokens_per_s, j_per_token = tokens_per_s * 1.1, j_per_token * 1.05
    return Profile(power_w=tokens_per_s * j_per_token, tokens_per_s=tokens_per_s,
                   latency_p90_s=latency_s)


def _gpu(index: int) -> GpuInfo:
    return GpuInfo(index=index, name="NVIDIA H100 80GB HBM3", uuid=f"GPU-fake-{index}",
                   memory_total_mb=81559.0, power_limit_w=700.0, default_power_limit_w=700.0,
                   persistence_mode=True, compute_capability="9.0")


def _environment(gpus: int, backend: str) -> Environment:
    return Environment(
        gpus=[_gpu(i) for i in range(gpus)], driver_version="550.54.15" if gpus else None,
        cuda_version="12.4" if gpus else None, os="Linux 6.1", python="3.11.9",
        harness_version="0", backend_versions={backend: "1.0.0"}, cpu="Fake CPU",
        container_image_digest="sha256:" + "ab" * 32)


def _energy(fake: Profile, duration_s: float, gpus: int, cycle: int) -> EnergyMetrics:
    if not gpus:  # no sensor: only the load's time is known
        return EnergyMetrics(cold_start_duration_s=3.0)
    power_w = fake.power_w * gpus * (1 + 0.01 * cycle)
    energy_j = power_w * duration_s
    dynamic_j = energy_j - IDLE_POWER_W * gpus * duration_s
    return EnergyMetrics(
        energy_j=energy_j, energy_dynamic_j=dynamic_j, baseline_power_w=IDLE_POWER_W * gpus,
        energy_method="nvml_counter", energy_per_output_token_j=energy_j / OUTPUT_TOKENS,
        energy_dynamic_per_output_token_j=dynamic_j / OUTPUT_TOKENS,
        tokens_per_joule=OUTPUT_TOKENS / energy_j, mean_power_w=power_w,
        prefill=PhaseEnergy(energy_j=energy_j * 0.1, duration_s=duration_s * 0.1),
        decode=PhaseEnergy(energy_j=energy_j * 0.9, duration_s=duration_s * 0.9),
        phase_split_method="prefill_pass",
        cold_start_energy_j=90.0 * gpus * 3.0, cold_start_duration_s=3.0)


def measured_result(spec: RunSpec, gpus: int, drift: tuple[str, ...] = ()) -> ExperimentResult:
    """The result the harness would write for ``spec`` on ``gpus`` fake GPUs (0: a CPU).

    Runs named in ``drift`` carry ``thermal_drift``, which leaves them out of statistics.
    """
    fake = profile(spec.config)
    duration_s = OUTPUT_TOKENS / fake.tokens_per_s
    latency = LatencyMetrics()
    if fake.latency_p90_s is not None:
        p90 = fake.latency_p90_s
        latency = LatencyMetrics(reference_point="batch_start", e2e=Percentiles(
            mean_s=p90 * 0.8, p50_s=p90 * 0.8, p90_s=p90, p99_s=p90 * 1.1, count=8))
    warnings = [] if gpus else [Warning_(
        code="no_energy_sensor", message="no NVIDIA GPU or NVML library was found")]
    if duration_s < 10:
        warnings.append(Warning_(code="short_window", message=f"window {duration_s:.1f} s"))
    if spec.run_id in drift:
        warnings.append(Warning_(code="thermal_drift", message="GPU 0 moved 6 degC"))
    return ExperimentResult(
        run_id=spec.run_id, config=spec.config, cycle=spec.cycle, runner=spec.runner,
        measurement_config_hash=spec.config.measurement_config_hash, effective_parameters={},
        started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:01:00Z",
        energy=_energy(fake, duration_s, gpus, spec.cycle),
        throughput=ThroughputMetrics(input_tokens=160, output_tokens=OUTPUT_TOKENS, requests=8,
                                     duration_s=duration_s,
                                     output_tokens_per_s=OUTPUT_TOKENS / duration_s,
                                     requests_per_s=8 / duration_s),
        latency=latency, warmup=WarmupRecord(batches=2, duration_s=2.0),
        baseline=BaselineRecord(power_w=[IDLE_POWER_W] * gpus, duration_s=2.0,
                                provenance="fresh", age_s=0.0) if gpus else None,
        environment=_environment(gpus, spec.config.backend), warnings=warnings)


def _phase_power_w(phase: str, fake: Profile) -> float:
    return {"baseline": IDLE_POWER_W, "load": 90.0, "warmup": fake.power_w,
            "measure": fake.power_w, "prefill_pass": fake.power_w * 1.2}.get(phase, 70.0)


def write_timeseries(path: Path, spec: RunSpec, gpus: int, duration_s: float) -> None:
    """The samples and phase markers of one run, as the harness's sampler writes them."""
    fake = profile(spec.config)
    writer = TimeSeriesWriter(path)
    t_s, temperature_c = 1000.0, 35.0
    for phase, seconds in PHASES:
        writer.mark_phase(phase, t_s)
        end_s = t_s + (duration_s if seconds is None else seconds)
        while t_s < end_s:
            power_w = _phase_power_w(phase, fake)
            temperature_c += (power_w - 100.0) / 2000.0
            writer.add(phase, [GpuSample(gpu_index=i, t_s=t_s, power_w=power_w + 5 * i,
                                         energy_counter_j=None, temperature_c=temperature_c,
                                         sm_clock_mhz=None, mem_clock_mhz=None,
                                         gpu_util_pct=None, mem_used_mb=None)
                               for i in range(gpus)])
            t_s += TICK_S
    writer.close()


class MeasuredRunWriter(Runner):
    """Writes result.json and timeseries.parquet of a run on fake GPUs (``gpus=0``: a CPU).

    Attributes:
        fail: run ids it fails instead (exit code 1, no result); ``"*"`` fails every run.
        drift: run ids whose result carries ``thermal_drift`` (excluded from statistics).
    """

    name = "fake"

    def __init__(self, gpus: int = 1, fail: tuple[str, ...] = (),
                 drift: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.gpus = gpus
        self.fail = fail
        self.drift = drift

    def run(self, run_dir: Path, timeout_s: float | None, on_event: EventCallback,
            gpus: list[int] | None = None) -> RunOutcome:
        spec = RunSpec.model_validate_json((run_dir / "experiment.json").read_text())
        if spec.run_id in self.fail or "*" in self.fail:
            return RunOutcome(end="error", exit_code=1, message="failed on purpose")
        result = measured_result(spec, self.gpus, self.drift)
        write_timeseries(run_dir / "timeseries.parquet", spec, self.gpus,
                         result.throughput.duration_s)
        (run_dir / "result.json").write_text(result.model_dump_json())
        return RunOutcome(end="ok", exit_code=0, message="")


SWEEP_STUDY = """\
name: sweep
model: m
backend: [pytorch, vllm]
execution: {n_cycles: 3, config_gap_s: 0, cycle_gap_s: 0}
sweep:
  precision: [bf16, fp16]
  pytorch.batch_size: [1, 4]
  vllm.max_num_seqs: [8, 64]
"""
"""Eight configurations: PyTorch (batch 1, 4) and vLLM (8, 64 sequences), bf16 and fp16."""


def measured_study(folder: Path, gpus: int = 1, fail: tuple[str, ...] = (),
                   drift: tuple[str, ...] = (), text: str = SWEEP_STUDY) -> Path:
    """Run ``text`` (a study file) with :class:`MeasuredRunWriter`; return the study directory."""
    from orchestrator import run_study

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "study.yaml").write_text(text)
    _, study_dir = run_study(folder / "study.yaml", MeasuredRunWriter(gpus, fail, drift),
                             output=folder / "out", no_gaps=True)
    return study_dir
