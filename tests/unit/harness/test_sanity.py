"""Post-run sanity checks flag a result; they never drop it."""

from __future__ import annotations

from harness import sanity
from harness.schema import ExperimentConfig, ExperimentResult
from harness.schema.result import (
    BaselineRecord,
    EnergyMetrics,
    Environment,
    GpuInfo,
    LatencyMetrics,
    ThroughputMetrics,
    WarmupRecord,
)


def result(energy_j=None, mean_w=None, duration_s=20.0, idle_w=None, limit_w=None):
    gpus = [GpuInfo(index=0, name="g", uuid="u", memory_total_mb=1.0, power_limit_w=limit_w)]
    return ExperimentResult(
        run_id="r", config=ExperimentConfig(model="m", backend="pytorch"),
        measurement_config_hash="0" * 16, effective_parameters={}, started_at="t",
        finished_at="t",
        energy=EnergyMetrics(energy_j=energy_j, mean_power_w=mean_w,
                             energy_per_gpu_j=None if energy_j is None else [energy_j]),
        throughput=ThroughputMetrics(input_tokens=10, output_tokens=10, requests=1,
                                     duration_s=duration_s, output_tokens_per_s=1.0,
                                     requests_per_s=1.0),
        latency=LatencyMetrics(), warmup=WarmupRecord(batches=1, duration_s=1.0),
        baseline=None if idle_w is None else BaselineRecord(power_w=[idle_w], duration_s=30,
                                                            provenance="fresh", age_s=0),
        environment=Environment(os="x", python="3", harness_version="0", gpus=gpus),
    )


def test_plausible_result_passes():
    flagged = sanity.flag(result(4000.0, 200.0, idle_w=60.0, limit_w=700.0), has_sensor=True)
    assert flagged.sanity is not None and flagged.sanity.passed
    assert "sanity_check_failed" not in flagged.warning_codes()


def test_each_implausible_figure_is_flagged_not_dropped():
    cases = {
        "not positive": result(0.0, 0.0),
        "below idle": result(1000.0, 50.0, idle_w=60.0),
        "exceeds the power limit": result(20000.0, 1000.0, limit_w=700.0),
        "negative": result(-5.0, -0.25),
        "under 1 s": result(100.0, 200.0, duration_s=0.5),
    }
    for expected, candidate in cases.items():
        flagged = sanity.flag(candidate, has_sensor=True)
        assert flagged.sanity is not None and not flagged.sanity.passed, expected
        assert any(expected in failure for failure in flagged.sanity.failed_checks), expected
        assert "sanity_check_failed" in flagged.warning_codes()
        assert flagged.energy == candidate.energy  # figures untouched


def test_no_sensor_null_energy_is_fine():
    flagged = sanity.flag(result(), has_sensor=False)
    assert flagged.sanity is not None and flagged.sanity.passed
