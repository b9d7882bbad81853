"""Post-run sanity checks: a failed check flags the result; it never drops it.

A result that fails one is still written, with ``sanity.passed = false``, the failed checks
listed, and a ``sanity_check_failed`` warning, so nobody mistakes it for a clean figure and
nobody loses the run.
"""

from __future__ import annotations

from harness.schema.result import ExperimentResult, SanityRecord, Warning_

MIN_MEANINGFUL_WINDOW_S = 1.0
IDLE_TOLERANCE = 0.9
LIMIT_TOLERANCE = 1.05


def check(result: ExperimentResult, has_sensor: bool) -> SanityRecord:
    """Run every check that applies to this result."""
    failures: list[str] = []
    work = result.throughput
    energy = result.energy
    if work.duration_s < MIN_MEANINGFUL_WINDOW_S:
        failures.append(f"window {work.duration_s:.3f} s is under {MIN_MEANINGFUL_WINDOW_S:g} s: "
                        "the energy counter cannot resolve it")
    if work.output_tokens <= 0:
        failures.append("no output tokens were generated")
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
    failures = []
    mean_w = energy.mean_power_w or 0.0
    if result.baseline is not None and mean_w < IDLE_TOLERANCE * sum(result.baseline.power_w):
        failures.append(f"mean power {mean_w:.1f} W is below idle power "
                        f"{sum(result.baseline.power_w):.1f} W")
    limits = [gpu.power_limit_w for gpu in result.environment.gpus]
    if limits and all(limit is not None for limit in limits):
        total_limit = sum(limit for limit in limits if limit is not None)
        if mean_w > LIMIT_TOLERANCE * total_limit:
            failures.append(f"mean power {mean_w:.1f} W exceeds the power limit "
                            f"{total_limit:.1f} W")
    return failures


def flag(result: ExperimentResult, has_sensor: bool) -> ExperimentResult:
    """Attach the sanity record (and a warning when a check failed) to ``result``."""
    record = check(result, has_sensor)
    warnings = list(result.warnings)
    if not record.passed:
        warnings.append(Warning_(code="sanity_check_failed",
                                 message="; ".join(record.failed_checks)))
    return result.model_copy(update={"sanity": record, "warnings": warnings})
