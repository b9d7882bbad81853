"""Turn what the backend and the energy meter recorded into result sections.

Pure functions over recorded numbers: no device access, no clock. Each figure's method is
written next to it (``docs/methodology.md`` explains them for users).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.backends.base import GenerationOutput
from harness.energy.device import GpuSample
from harness.energy.meter import EnergyReading
from harness.energy.nvml import SLOWDOWN_REASONS
from harness.schema.result import (
    EnergyMetrics,
    FlopsEstimate,
    LatencyMetrics,
    MemoryMetrics,
    Percentiles,
    ThermalMetrics,
    ThroughputMetrics,
)

NVML_ACCURACY_W = 5.0
"""NVML's documented power accuracy per GPU (+-5 W)."""


def percentiles(values_s: Sequence[float]) -> Percentiles | None:
    """Mean, p50, p90 and p99 of a latency sample (seconds); None when empty."""
    if not values_s:
        return None
    data = np.asarray(values_s, dtype=float)
    p50, p90, p99 = np.percentile(data, [50, 90, 99])
    return Percentiles(
        mean_s=float(data.mean()),
        p50_s=float(p50),
        p90_s=float(p90),
        p99_s=float(p99),
        count=int(data.size),
    )


def latency(output: GenerationOutput) -> LatencyMetrics:
    """Per-request latency, each measured from the backend's reference point.

    e2e needs an observed per-request end; TTFT a first-token time; TPOT is (last token -
    first token) / (tokens - 1) of the request itself, which for a streamed request is
    (e2e - TTFT) / (tokens - 1); ITL is the gap between consecutive streamed chunks of one
    request (tokens that arrive together in one chunk are one gap, not several zero gaps).
    """
    items = output.outputs
    e2e = [i.end_s - i.start_s for i in items if i.end_s is not None]
    ttft = [i.first_token_s - i.start_s for i in items
            if i.token_times_s is not None and i.first_token_s is not None]
    # TPOT is the request's own pace: from its first token to its own last one. A static
    # batch returns a short row only with its longest one (that wait is in e2e, not in TPOT).
    tpot = [(i.token_times_s[-1] - i.first_token_s) / (i.output_tokens - 1) for i in items
            if i.token_times_s and i.first_token_s is not None and i.output_tokens > 1]
    itl: list[float] = []
    for item in items:
        if item.chunk_times_s is not None:
            itl.extend(np.diff(np.asarray(item.chunk_times_s, dtype=float)).tolist())
    return LatencyMetrics(
        reference_point=output.latency_reference if items else None,
        e2e=percentiles(e2e), ttft=percentiles(ttft), tpot=percentiles(tpot),
        itl=percentiles(itl),
    )


def throughput(output: GenerationOutput, duration_s: float) -> ThroughputMetrics:
    """Token and request counts over the measurement window."""
    output_tokens = sum(item.output_tokens for item in output.outputs)
    requests = len(output.outputs)
    return ThroughputMetrics(
        input_tokens=sum(item.input_tokens for item in output.outputs),
        output_tokens=output_tokens,
        generated_positions=sum(item.generated_positions or item.output_tokens
                                for item in output.outputs),
        prompt_padding_tokens=sum(item.padding_tokens for item in output.outputs),
        requests=requests,
        duration_s=duration_s,
        output_tokens_per_s=output_tokens / duration_s if duration_s > 0 else 0.0,
        requests_per_s=requests / duration_s if duration_s > 0 else 0.0,
        cached_prompt_tokens=cached_prompt_tokens(output),
    )


def cached_prompt_tokens(output: GenerationOutput) -> int | None:
    """Prompt tokens served from a cross-request cache, summed over requests.

    None when any request's count is unknown: a partial sum would read as a complete one.
    """
    counts = [item.cached_input_tokens for item in output.outputs]
    if not counts or any(count is None for count in counts):
        return None
    return sum(count for count in counts if count is not None)


def energy(
    reading: EnergyReading,
    work: ThroughputMetrics,
    baseline_power_w: float | None,
    n_gpus: int,
) -> EnergyMetrics:
    """Window energy and the figures derived from it; all None without a sensor."""
    if reading.energy_j is None:
        return EnergyMetrics(baseline_power_w=baseline_power_w)
    energy_j = reading.energy_j
    dynamic = None
    if baseline_power_w is not None:
        dynamic = energy_j - baseline_power_w * reading.duration_s
    mean_power = reading.mean_power_w
    return EnergyMetrics(
        energy_j=energy_j,
        energy_per_gpu_j=reading.energy_per_gpu_j,
        baseline_power_w=baseline_power_w,
        energy_dynamic_j=dynamic,
        energy_integrated_j=reading.energy_integrated_j,
        energy_integrated_per_gpu_j=reading.energy_integrated_per_gpu_j,
        power_samples_per_gpu=reading.samples_per_gpu or None,
        sampler_read_errors_per_gpu=reading.read_errors_per_gpu or None,
        energy_method=reading.method,
        energy_per_output_token_j=_ratio(energy_j, work.output_tokens),
        energy_dynamic_per_output_token_j=(
            None if dynamic is None else _ratio(dynamic, work.output_tokens)
        ),
        energy_per_request_j=_ratio(energy_j, work.requests),
        tokens_per_joule=_ratio(work.output_tokens, energy_j),
        mean_power_w=mean_power,
        uncertainty_pct=(
            100.0 * NVML_ACCURACY_W * n_gpus / mean_power if mean_power else None
        ),
    )


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def flops(non_embedding_params: int, work: ThroughputMetrics) -> FlopsEstimate:
    """2 x non-embedding parameters x tokens: reference metadata, never a headline."""
    prefill = 2.0 * non_embedding_params * work.input_tokens
    decode = 2.0 * non_embedding_params * work.output_tokens
    return FlopsEstimate(
        flops=prefill + decode,
        prefill_flops=prefill,
        decode_flops=decode,
        method="2 x non-embedding parameters x tokens; attention score FLOPs not counted",
        confidence="medium",
    )


def thermal(samples: Sequence[GpuSample], gpu_indices: Sequence[int]) -> ThermalMetrics | None:
    """Temperature at the window edges, slowdown reasons seen and mean SM clock, per GPU.

    Args:
        samples: samples taken inside the window.
        gpu_indices: the measured GPUs' indices, in result order.
    """
    if not gpu_indices or not samples:
        return None
    position = {index: i for i, index in enumerate(gpu_indices)}
    per_gpu: list[list[GpuSample]] = [[] for _ in gpu_indices]
    for sample in samples:
        if sample.gpu_index in position:
            per_gpu[position[sample.gpu_index]].append(sample)
    if any(not series for series in per_gpu):
        return None
    # Idle and application-clock "reasons" are not slowdowns; only real throttling counts.
    reasons = sorted({r for s in samples for r in s.throttle_reasons if r in SLOWDOWN_REASONS})
    per_gpu_reasons = [sorted({r for s in series for r in s.throttle_reasons
                               if r in SLOWDOWN_REASONS}) for series in per_gpu]
    return ThermalMetrics(
        temperature_start_c=[_first_value(s, "temperature_c") for s in per_gpu],
        temperature_end_c=[_first_value(list(reversed(s)), "temperature_c") for s in per_gpu],
        throttle_reasons_seen=reasons,
        throttle_reasons_per_gpu=per_gpu_reasons,
        sm_clock_mhz_mean=[_mean(s, "sm_clock_mhz") for s in per_gpu],
        gpu_util_pct_max=[_max(s, "gpu_util_pct") for s in per_gpu],
        mem_clock_mhz_mean=[_mean(s, "mem_clock_mhz") for s in per_gpu],
        user_clocks_limited=[any("applications_clocks_setting" in s.throttle_reasons
                                 for s in series) for series in per_gpu],
    )


def _first_value(series: Sequence[GpuSample], name: str) -> float | None:
    for sample in series:
        value = getattr(sample, name)
        if value is not None:
            return float(value)
    return None


def _max(series: Sequence[GpuSample], name: str) -> float | None:
    values = [getattr(s, name) for s in series if getattr(s, name) is not None]
    return float(max(values)) if values else None


def _mean(series: Sequence[GpuSample], name: str) -> float | None:
    values = [getattr(s, name) for s in series if getattr(s, name) is not None]
    return float(np.mean(values)) if values else None


def device_memory(samples: Sequence[GpuSample], load_start_s: float, load_end_s: float,
                  window: Sequence[GpuSample], gpu_indices: Sequence[int]) -> MemoryMetrics | None:
    """GPU memory from the time series, for backends whose engine runs in other processes.

    Model memory is each GPU's ``mem_used_mb`` at the first sample after loading minus the last
    sample before it, summed; peak is the highest in-window reading minus the same pre-load
    reading. Both are whole-GPU figures from the driver: they include the engine's KV-cache
    reservation and CUDA contexts, not just weights. None when a GPU lacks the readings.
    """
    model_mb = peak_mb = 0.0
    for index in gpu_indices:
        mine = [s for s in samples if s.gpu_index == index and s.mem_used_mb is not None]
        before = [s for s in mine if s.t_s <= load_start_s]
        after = [s for s in mine if s.t_s >= load_end_s]
        in_window = [s.mem_used_mb for s in window
                     if s.gpu_index == index and s.mem_used_mb is not None]
        if not before or not after or not in_window:
            return None
        idle = before[-1].mem_used_mb or 0.0
        model_mb += (after[0].mem_used_mb or 0.0) - idle
        peak_mb += max(in_window) - idle
    return MemoryMetrics(
        device="cuda",
        model_memory_mb=model_mb,
        peak_inference_memory_mb=peak_mb,
        method=(
            "NVML memory used per GPU, summed: model = first sample after load minus last "
            "sample before it; peak = highest sample in the window minus the pre-load sample. "
            "Whole-GPU figures: they include the engine's KV-cache reservation and CUDA "
            "contexts; MiB"
        ),
    )
