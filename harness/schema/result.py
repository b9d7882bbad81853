"""ExperimentResult: everything one run measured, schema version "1".

A field that this run could not measure is null, and ``warnings`` carries the reason; no field
is ever filled with an estimate that is not labelled as one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.schema.config import ExperimentConfig

SCHEMA_VERSION: Literal["1"] = "1"


class Record(BaseModel):
    """Base of result models: unknown keys are rejected so a reader notices a schema change."""

    model_config = ConfigDict(extra="forbid")


class Warning_(Record):
    """A condition the reader of this result should know about."""

    code: str = Field(description="Stable machine-readable code, e.g. no_energy_sensor.")
    message: str = Field(description="What happened and what it means for the figures.")


class Percentiles(Record):
    """Summary of a latency distribution (seconds)."""

    mean_s: float
    p50_s: float
    p90_s: float
    p99_s: float
    count: int


class PhaseEnergy(Record):
    """Energy of the prefill or decode phase."""

    energy_j: float | None
    duration_s: float


class EnergyMetrics(Record):
    """Energy over the measurement window. Null where no sensor exists (see warnings)."""

    energy_j: float | None = Field(None, description="Raw window energy, summed over GPUs (J).")
    energy_per_gpu_j: list[float] | None = Field(None, description="Raw window energy per GPU.")
    baseline_power_w: float | None = Field(None, description="Idle power, summed over GPUs (W).")
    energy_dynamic_j: float | None = Field(
        None, description="energy_j - baseline_power_w x duration_s; never replaces energy_j."
    )
    energy_integrated_j: float | None = Field(
        None, description="Trapezoidal integral of sampled power (cross-check)."
    )
    energy_method: str | None = Field(
        None, description="<source>_counter or <source>_power_integration (source: nvml, "
        "zeus or codecarbon); null without a sensor."
    )
    energy_per_output_token_j: float | None = None
    energy_per_request_j: float | None = None
    tokens_per_joule: float | None = None
    mean_power_w: float | None = None
    uncertainty_pct: float | None = Field(
        None, description="NVML's +-5 W accuracy as a percentage of mean power."
    )
    prefill: PhaseEnergy | None = None
    decode: PhaseEnergy | None = None
    phase_split_method: Literal["exact", "approximate"] | None = None
    cold_start_energy_j: float | None = Field(None, description="Energy of model load (J).")
    cold_start_duration_s: float | None = Field(None, description="Model load time (s).")


class ThroughputMetrics(Record):
    """Work done in the measurement window."""

    input_tokens: int
    output_tokens: int
    requests: int
    duration_s: float = Field(description="Measurement window length (s).")
    output_tokens_per_s: float
    requests_per_s: float


class LatencyMetrics(Record):
    """Per-request latency; TTFT and ITL only with latency.streaming."""

    e2e: Percentiles | None = None
    ttft: Percentiles | None = None
    itl: Percentiles | None = Field(None, description="Inter-token latency, first token excluded.")


class MemoryMetrics(Record):
    """Memory taken by the model and at the peak of inference."""

    device: str = Field(description="'cuda' or 'cpu'.")
    model_memory_mb: float | None = None
    peak_inference_memory_mb: float | None = None
    method: str = Field(description="How the figures were obtained.")


class ThermalMetrics(Record):
    """Temperatures and throttling seen in the window (per GPU)."""

    temperature_start_c: list[float | None] | None = None
    temperature_end_c: list[float | None] | None = None
    throttle_reasons_seen: list[str] = Field(default_factory=list)
    sm_clock_mhz_mean: list[float | None] | None = None


class FlopsEstimate(Record):
    """Reference metadata, never a headline figure."""

    flops: float
    prefill_flops: float
    decode_flops: float
    method: str
    confidence: Literal["low", "medium", "high"]


class WarmupRecord(Record):
    """What the warmup did before the window opened."""

    batches: int = Field(
        description="Batches run: static batches (PyTorch) or engine waves, first pass included.")
    duration_s: float
    temperature_start_c: list[float | None] | None = None
    temperature_end_c: list[float | None] | None = None
    stable: bool | None = Field(
        None, description="With warmup.until_stable: whether the steady-state rule was met "
        "(docs/methodology.md). Null when not asked or without a GPU.")
    temperature_slope_c_per_min: list[float | None] | None = Field(
        None, description="Per GPU: least-squares temperature slope over the last "
        "stability_window_s of warmup (degC/min); null entry with too few readings.")
    power_slope_pct_per_min: list[float | None] | None = Field(
        None, description="Per GPU: least-squares slope of the mean power of each whole "
        "repeated warmup batch over the last stability_window_s, as % of their mean per "
        "minute (%/min); null entry with fewer than 4 such batches or no power reading.")
    stability_window_s: float | None = Field(
        None, description="Length of the window the slopes were fitted over (s): 120, or the "
        "whole warmup when shorter. Null without a GPU.")


class CoolDownRecord(Record):
    """The orchestrator's wait for the GPUs to cool before this run (gap_until_cool)."""

    outcome: Literal["reached", "cut_off", "not_requested", "first_run", "no_sensor",
                     "interrupted"] = Field(
        description="reached: every GPU came within margin_c of its idle reference; cut_off: "
        "max_s passed first; not_requested: gap_until_cool off (or gaps skipped); first_run: "
        "the idle reference was read just before this run, no wait; no_sensor: no GPU "
        "temperature to wait on; interrupted: a stop request ended the wait.")
    waited_s: float | None = Field(
        None, description="Seconds waited after the fixed gap (s); null when there was no wait.")
    margin_c: float | None = Field(None, description="execution.cool_margin_c (degC).")
    max_s: float | None = Field(None, description="execution.cool_max_s (s).")
    gpu_indices: list[int] | None = Field(
        None, description="Host NVML indices the temperatures below belong to.")
    idle_c: list[float | None] | None = Field(
        None, description="Per GPU: idle reference, read before the study's first run (degC).")
    temperature_c: list[float | None] | None = Field(
        None, description="Per GPU: temperature when the wait ended (degC).")


class BaselineRecord(Record):
    """Idle power measured before the model loaded."""

    power_w: list[float] = Field(description="Idle power per GPU (W).")
    duration_s: float
    provenance: Literal["fresh", "cached"]
    age_s: float
    temperature_c: list[float | None] | None = Field(
        None, description="Per GPU: temperature when the baseline was taken (degC); its 5 degC "
        "band is part of the cache key.")
    cool_down: CoolDownRecord | None = Field(
        None, description="How the cool-down before this run ended; null for a run not "
        "started by a study.")


class GpuInfo(Record):
    """One GPU as the driver reports it."""

    index: int
    name: str
    uuid: str
    memory_total_mb: float
    compute_capability: str | None = None
    power_limit_w: float | None = None
    default_power_limit_w: float | None = None
    persistence_mode: bool | None = None
    ecc_enabled: bool | None = None
    mig_enabled: bool | None = None
    applications_graphics_clock_mhz: float | None = Field(
        None, description="Applications clock target for graphics (MHz); null where unsupported.")
    applications_memory_clock_mhz: float | None = Field(
        None, description="Applications clock target for memory (MHz); null where unsupported.")
    auto_boost_enabled: bool | None = Field(
        None, description="Auto boosted clocks on; null where unsupported (most recent GPUs).")


class Environment(Record):
    """The machine and software the run measured, read from APIs (never from pip)."""

    gpus: list[GpuInfo] = Field(default_factory=list)
    driver_version: str | None = None
    cuda_version: str | None = None
    cudnn_version: str | None = None
    cpu: str | None = None
    cpu_count: int | None = None
    ram_gb: float | None = None
    os: str
    python: str
    harness_version: str
    backend_versions: dict[str, str] = Field(default_factory=dict)
    container_image_id: str | None = None
    container_image_digest: str | None = None
    hostname_hash: str | None = Field(None, description="SHA-256 prefix, not the name itself.")


class EngineCacheRecord(Record):
    """How a TensorRT-LLM run got its engine (see docs/backends.md)."""

    source: Literal["cache", "engine_dir"] = Field(
        description="'cache': the llem engine cache; 'engine_dir': a prebuilt engine given.")
    hit: bool | None = Field(None, description="True: found built; False: built by this run.")
    key: str | None = Field(None, description="SHA-256 of the build description.")
    engine_dir: str = Field(description="The engine that was loaded.")
    build_s: float | None = Field(
        None, description="Build time in this run (part of the cold start), None on a hit.")
    description: dict[str, Any] | None = Field(None, description="What the key hashes.")


class SanityRecord(Record):
    """Post-run checks; a failure flags the result, it does not drop it."""

    passed: bool
    failed_checks: list[str] = Field(default_factory=list)


class ExperimentResult(Record):
    """Everything one run measured."""

    schema_version: Literal["1"] = SCHEMA_VERSION
    run_id: str
    config: ExperimentConfig
    measurement_config_hash: str
    effective_parameters: dict[str, Any] = Field(
        description="Backend parameters as the backend actually ran them, defaults resolved."
    )
    cycle: int = 1
    runner: str = "inprocess"
    started_at: str
    finished_at: str
    energy: EnergyMetrics
    throughput: ThroughputMetrics
    latency: LatencyMetrics
    memory: MemoryMetrics | None = None
    thermal: ThermalMetrics | None = None
    flops_estimate: FlopsEstimate | None = None
    warmup: WarmupRecord
    baseline: BaselineRecord | None = None
    engine_cache: EngineCacheRecord | None = Field(
        None, description="TensorRT-LLM only: engine cache hit or miss and build time.")
    environment: Environment
    sanity: SanityRecord | None = Field(None, description="Post-run sanity checks.")
    warnings: list[Warning_] = Field(default_factory=list)

    def warning_codes(self) -> list[str]:
        """Codes of all warnings, in order."""
        return [warning.code for warning in self.warnings]


class ErrorRecord(Record):
    """``error.json``: why a run failed, and in which phase."""

    schema_version: Literal["1"] = SCHEMA_VERSION
    type: str
    message: str
    traceback: str
    phase: str
