"""Warnings: conditions a reader of a result must know about, each with a stable code.

Machine-level ones are raised by preflight before anything runs; window-level ones after the
measurement. Warnings never change a figure; they say how far to trust it.
"""

from __future__ import annotations

import os

from harness.energy.device import GpuSet
from harness.energy.meter import EnergyReading
from harness.energy.nvml import ROUTINE_REASONS
from harness.load import LoadRun
from harness.schema.config import ExperimentConfig
from harness.schema.result import ServingMetrics, ThermalMetrics, ThroughputMetrics, Warning_

MIN_WINDOW_S = 10.0
MIN_SAMPLES = 10
MAX_DRIFT_C = 5.0
STEADY_WARMUP_S = 60.0


def machine_warnings(gpus: GpuSet) -> list[Warning_]:
    """MIG, persistence, power limit and foreign compute processes on the measured GPUs."""
    warnings: list[Warning_] = []
    own_pid = os.getpid()
    for gpu in gpus:
        info = gpu.info()
        label = f"GPU {info.index} ({info.name})"
        if info.mig_enabled:
            warnings.append(Warning_(
                code="mig_enabled",
                message=f"{label} has MIG enabled: NVML energy covers the whole GPU, "
                "not the slice this run used",
            ))
        if info.grace_hopper:
            warnings.append(Warning_(
                code="grace_hopper_module",
                message=f"{label} is a Grace Hopper module: its power and energy readings cover "
                "the module (Grace CPU and memory included), not the GPU alone",
            ))
        if info.persistence_mode is False:
            warnings.append(Warning_(
                code="persistence_off",
                message=f"{label} has persistence mode off: idle power and first-call latency "
                "include driver re-initialisation (fix: nvidia-smi -pm 1)",
            ))
        if (
            info.power_limit_w is not None
            and info.default_power_limit_w is not None
            and info.power_limit_w < info.default_power_limit_w
        ):
            warnings.append(Warning_(
                code="power_limit_below_default",
                message=f"{label} power limit {info.power_limit_w:.0f} W is below its default "
                f"{info.default_power_limit_w:.0f} W: figures are not comparable with a "
                "default-limit GPU",
            ))
        foreign = [pid for pid in gpu.compute_processes() if pid != own_pid]
        if foreign:
            warnings.append(Warning_(
                code="foreign_processes",
                message=f"{label} runs other compute processes (pids {foreign}): their energy "
                "is inside this measurement",
            ))
    return warnings


def config_warnings(config: ExperimentConfig) -> list[Warning_]:
    """Warnings that follow from the configuration alone."""
    warnings: list[Warning_] = []
    if config.warmup.min_seconds < STEADY_WARMUP_S and not config.warmup.until_stable:
        warnings.append(Warning_(
            code="warmup_cut_short",
            message=f"warmup.min_seconds is {config.warmup.min_seconds:g} s (< "
            f"{STEADY_WARMUP_S:g} s): the window may open before thermal steady state",
        ))
    return warnings


def window_warnings(work: ThroughputMetrics, reading: EnergyReading,
                    thermal: ThermalMetrics | None, gpus: GpuSet) -> list[Warning_]:
    """Short window, few samples, read errors, thermal drift and throttling in the window."""
    indices = [gpu.index for gpu in gpus]
    warnings: list[Warning_] = []
    if work.duration_s < MIN_WINDOW_S:
        warnings.append(Warning_(
            code="short_window",
            message=f"measurement window {work.duration_s:.2f} s is under {MIN_WINDOW_S:g} s: "
            "the energy counter updates about every 100 ms, so edges weigh heavily",
        ))
    warnings.extend(_sampling_warnings(reading, indices))
    warnings.extend(_secondary_read_warnings(gpus))
    if thermal is not None:
        warnings.extend(_thermal_warnings(thermal, indices))
    return warnings


def _sampling_warnings(reading: EnergyReading, indices: list[int]) -> list[Warning_]:
    """Few successful power reads, and failed reads, per GPU (not ticks of the sampler)."""
    warnings: list[Warning_] = []
    for index, reads, errors in zip(indices, reading.samples_per_gpu,
                                    reading.read_errors_per_gpu, strict=False):
        if reads < MIN_SAMPLES:
            warnings.append(Warning_(
                code="few_samples",
                message=f"GPU {index}: only {reads} successful power reads in the window "
                f"(< {MIN_SAMPLES})",
            ))
        if errors:
            warnings.append(Warning_(
                code="sampler_read_errors",
                message=f"GPU {index}: {errors} power/counter reads failed in the window "
                f"({reads} succeeded); the integrated-power cross-check has gaps there",
            ))
    return warnings


def _secondary_read_warnings(gpus: GpuSet) -> list[Warning_]:
    warnings: list[Warning_] = []
    for gpu in gpus:
        errors = getattr(gpu, "secondary_read_errors", 0)
        if errors:
            warnings.append(Warning_(
                code="secondary_read_errors",
                message=f"GPU {gpu.index}: {errors} reads of temperature, clocks, utilisation, "
                "memory or throttling failed during the run (those values are null there; "
                "power and energy were kept)",
            ))
    return warnings


def _thermal_warnings(thermal: ThermalMetrics, indices: list[int]) -> list[Warning_]:
    warnings: list[Warning_] = []
    starts = thermal.temperature_start_c or []
    ends = thermal.temperature_end_c or []
    for index, start, end in zip(indices, starts, ends, strict=False):
        if start is not None and end is not None and abs(end - start) > MAX_DRIFT_C:
            warnings.append(Warning_(
                code="thermal_drift",
                message=f"GPU {index} temperature moved {start:.0f} -> {end:.0f} degC in the "
                "window: it was not at steady state",
            ))
    for index, reasons in zip(indices, thermal.throttle_reasons_per_gpu or [], strict=False):
        slowdowns = [reason for reason in reasons if reason not in ROUTINE_REASONS]
        if slowdowns:
            warnings.append(Warning_(
                code="throttling",
                message=f"GPU {index} slowed its clocks in the window: {', '.join(slowdowns)}",
            ))
    return warnings


def cross_request_cache_requested(config: ExperimentConfig) -> bool:
    """Whether the study turned a cross-request KV cache on (it is off by default)."""
    vllm = config.vllm is not None and config.vllm.enable_prefix_caching is True
    tensorrt = config.tensorrt is not None and config.tensorrt.enable_block_reuse is True
    return vllm or tensorrt


def cache_warnings(config: ExperimentConfig, work: ThroughputMetrics) -> list[Warning_]:
    """Prompt tokens served from a cross-request cache that the study did not ask for."""
    cached = work.cached_prompt_tokens
    if not cached or cross_request_cache_requested(config):
        return []
    return [Warning_(
        code="cross_request_cache_hits",
        message=f"{cached} of {work.input_tokens} prompt tokens in the window were served from "
        "a cross-request KV cache although the study did not turn one on: the window did less "
        "prefill than the workload claims, so energy per token is not comparable",
    )]


def serving_warnings(run: LoadRun, serving: ServingMetrics) -> list[Warning_]:
    """Failed requests and saturation of a serving run."""
    warnings: list[Warning_] = []
    failed = [request for request in run.requests if request.error is not None]
    if failed:
        warnings.append(Warning_(
            code="serving_requests_failed",
            message=f"{len(failed)} of {len(run.requests)} requests failed; the first "
            f"(request {failed[0].request_id}): {failed[0].error}",
        ))
    if serving.saturated:
        warnings.append(Warning_(code="serving_saturated",
                                 message=serving.saturation_reason or "saturated"))
    return warnings
