"""Post-run sanity checks: a failed check flags the result; it never drops it.

A result that fails one is still written, with ``sanity.passed = false``, the failed checks
listed, and a ``sanity_check_failed`` warning, so nobody mistakes it for a clean figure and
nobody loses the run. Every check reads only the result itself, so anyone can re-run them on a
result file. The checks look for the ways a figure goes wrong while looking plausible: a window
too short for the counter, a GPU measured that the model never used, a counter that stood still
while power was drawn, a sampler that could not read a GPU, energy below idle, a counter
that disagrees with sampled power, and a serving run in which requests failed (its energy
paid for a load that was not served).
"""

from __future__ import annotations

from collections.abc import Iterator

from harness.schema.result import ExperimentResult, SanityRecord, Warning_

MIN_MEANINGFUL_WINDOW_S = 1.0
IDLE_TOLERANCE = 0.9
LIMIT_TOLERANCE = 1.05
IDLE_GPU_FACTOR = 1.1
"""A GPU whose window mean power is within 10 % of its idle power, at 0 % utilisation, idled."""
STILL_COUNTER_FRACTION = 0.01
"""A counter that moved less than 1 % of what sampled power integrates to stood still."""
MIN_READS = 10
"""Successful power reads per GPU below which a window with read errors is not trusted."""
NEGATIVE_DYNAMIC_TOLERANCE = 0.02
"""Dynamic energy below -2 % of raw energy is negative beyond the sensor's noise."""
DISAGREEMENT_FAIL = 0.10
"""Counter vs integrated power apart by more than 10 % (windows of 10 s or more) fails."""
DISAGREEMENT_MIN_WINDOW_S = 10.0
DISAGREEMENT_MIN_READS = 20
"""Sampled power integrates well enough to fail a run only from 20 successful reads."""


def check(result: ExperimentResult, has_sensor: bool) -> SanityRecord:
    """Run every check that applies to this result."""
    failures: list[str] = []
    work = result.throughput
    energy = result.energy
    if has_sensor and work.duration_s < MIN_MEANINGFUL_WINDOW_S:
        failures.append(f"window {work.duration_s:.3f} s is under {MIN_MEANINGFUL_WINDOW_S:g} s: "
                        "the energy counter cannot resolve it")
    if work.output_tokens <= 0:
        failures.append("no output tokens were generated")
    serving = result.serving
    if serving is not None and serving.requests_failed:
        failures.append(f"{serving.requests_failed} of {serving.requests_total} serving "
                        "requests failed: the window did not serve the offered load")
    if has_sensor:
        failures.extend(_energy_checks(result))
    elif energy.energy_j is not None:
        failures.append("an energy figure exists although no sensor was used")
    return SanityRecord(passed=not failures, failed_checks=failures)


def _energy_checks(result: ExperimentResult) -> list[str]:
    energy = result.energy
    if any(value < 0 for value in energy.energy_per_gpu_j or []):
        return ["a GPU's energy is negative (counter went backwards)"]
    if energy.energy_j is None or energy.energy_j <= 0:
        return [f"energy {energy.energy_j} J is not positive although a sensor was used"]
    failures = _total_power_checks(result)
    failures.extend(_per_gpu_checks(result))
    return failures


def _total_power_checks(result: ExperimentResult) -> list[str]:
    energy = result.energy
    failures = []
    mean_w = energy.mean_power_w or 0.0
    if result.baseline is not None and mean_w < IDLE_TOLERANCE * sum(result.baseline.power_w):
        failures.append(f"mean power {mean_w:.1f} W is below idle power "
                        f"{sum(result.baseline.power_w):.1f} W")
    dynamic_j, raw_j = energy.energy_dynamic_j, energy.energy_j or 0.0
    if dynamic_j is not None and dynamic_j < -NEGATIVE_DYNAMIC_TOLERANCE * raw_j:
        failures.append(f"dynamic energy {dynamic_j:.1f} J is negative (beyond "
                        f"{NEGATIVE_DYNAMIC_TOLERANCE:.0%} of raw energy): the window drew less "
                        "than the idle baseline")
    limits = [gpu.power_limit_w for gpu in result.environment.gpus]
    if limits and all(limit is not None for limit in limits):
        total_limit = sum(limit for limit in limits if limit is not None)
        if mean_w > LIMIT_TOLERANCE * total_limit:
            failures.append(f"mean power {mean_w:.1f} W exceeds the power limit "
                            f"{total_limit:.1f} W")
    return failures


def _gpus(result: ExperimentResult) -> Iterator[tuple[int, int]]:
    """(position in the per-GPU lists, the GPU's index) of every measured GPU."""
    for position, gpu in enumerate(result.environment.gpus):
        yield position, gpu.index


def _at(values: list[float] | list[int] | list[float | None] | None,
        position: int) -> float | None:
    if values is None or position >= len(values):
        return None
    value = values[position]
    return None if value is None else float(value)


def _per_gpu_checks(result: ExperimentResult) -> list[str]:
    failures: list[str] = []
    for position, index in _gpus(result):
        for problem in (_idle_gpu(result, position, index), _still_counter(result, position, index),
                        _unread_gpu(result, position, index),
                        _disagreement(result, position, index)):
            if problem:
                failures.append(problem)
    return failures


def _idle_gpu(result: ExperimentResult, position: int, index: int) -> str | None:
    energy, thermal = result.energy, result.thermal
    util_max = _at(thermal.gpu_util_pct_max if thermal else None, position)
    gpu_j = _at(energy.energy_per_gpu_j, position)
    if util_max is None or util_max > 0 or gpu_j is None or result.throughput.duration_s <= 0:
        return None
    mean_w = gpu_j / result.throughput.duration_s
    idle_w = _at(result.baseline.power_w if result.baseline else None, position)
    if idle_w is not None and mean_w > IDLE_GPU_FACTOR * idle_w:
        return None
    idle = f", idle {idle_w:.1f} W" if idle_w is not None else ""
    return (f"GPU {index} stayed idle ({mean_w:.1f} W{idle}, 0 % utilisation throughout the "
            "window): the model did not run on it")


def _still_counter(result: ExperimentResult, position: int, index: int) -> str | None:
    energy = result.energy
    counted_j = _at(energy.energy_per_gpu_j, position)
    integrated_j = _at(energy.energy_integrated_per_gpu_j, position)
    if counted_j is None or integrated_j is None or integrated_j <= 0:
        return None
    if counted_j >= STILL_COUNTER_FRACTION * integrated_j:
        return None
    return (f"GPU {index}'s energy counter moved {counted_j:.3f} J while its sampled power "
            f"integrates to {integrated_j:.1f} J: the counter is stuck")


def _unread_gpu(result: ExperimentResult, position: int, index: int) -> str | None:
    energy = result.energy
    reads = _at(energy.power_samples_per_gpu, position)
    errors = _at(energy.sampler_read_errors_per_gpu, position)
    if reads is None or not errors or reads >= MIN_READS:
        return None
    return (f"GPU {index}: only {reads:.0f} successful power reads in the window "
            f"({errors:.0f} failed): its samples cannot cross-check the counter")


def _disagreement(result: ExperimentResult, position: int, index: int) -> str | None:
    energy = result.energy
    counted_j = _at(energy.energy_per_gpu_j, position)
    integrated_j = _at(energy.energy_integrated_per_gpu_j, position)
    method = energy.energy_method or ""
    reads = _at(energy.power_samples_per_gpu, position)
    if (counted_j is None or integrated_j is None or counted_j <= 0
            or not method.endswith("_counter")
            or result.throughput.duration_s < DISAGREEMENT_MIN_WINDOW_S
            or (reads is not None and reads < DISAGREEMENT_MIN_READS)):
        return None
    relative = abs(integrated_j - counted_j) / counted_j
    if relative <= DISAGREEMENT_FAIL:
        return None
    return (f"GPU {index}: counter {counted_j:.1f} J and sampled power {integrated_j:.1f} J are "
            f"{relative:.0%} apart (over {DISAGREEMENT_FAIL:.0%} in a window of "
            f"{DISAGREEMENT_MIN_WINDOW_S:g} s or more)")


def flag(result: ExperimentResult, has_sensor: bool) -> ExperimentResult:
    """Attach the sanity record (and a warning when a check failed) to ``result``."""
    record = check(result, has_sensor)
    warnings = list(result.warnings)
    if not record.passed:
        warnings.append(Warning_(code="sanity_check_failed",
                                 message="; ".join(record.failed_checks)))
    return result.model_copy(update={"sanity": record, "warnings": warnings})
