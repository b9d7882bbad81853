"""Results as the harness would write them, for tests of the host's bookkeeping."""

from __future__ import annotations

from harness.schema.result import (
    EnergyMetrics,
    Environment,
    ExperimentResult,
    HostEnergy,
    HostEnergyZone,
    LatencyMetrics,
    ThroughputMetrics,
    WarmupRecord,
)
from harness.schema.run_spec import RunSpec


def fake_result(spec: RunSpec, energy_j: float) -> ExperimentResult:
    """What the harness would write for ``spec``: 100 output tokens in a 2 s window.

    The host's one CPU package draws 30 W over it (RAPL; no DRAM zone).
    """
    host = HostEnergy(method="rapl_powercap", cpu_package_energy_j=60.0, duration_s=2.0,
                      zones=[HostEnergyZone(zone="intel-rapl:0", name="package-0",
                                            energy_j=60.0)])
    return ExperimentResult(
        run_id=spec.run_id, config=spec.config, cycle=spec.cycle, runner=spec.runner,
        measurement_config_hash=spec.config.measurement_config_hash, effective_parameters={},
        started_at="t", finished_at="t",
        energy=EnergyMetrics(energy_j=energy_j, energy_per_output_token_j=energy_j / 100,
                             tokens_per_joule=100 / energy_j, mean_power_w=energy_j / 2,
                             host=host),
        throughput=ThroughputMetrics(input_tokens=40, output_tokens=100, requests=4,
                                     duration_s=2.0, output_tokens_per_s=50.0,
                                     requests_per_s=2.0),
        latency=LatencyMetrics(), warmup=WarmupRecord(batches=1, duration_s=0.1),
        environment=Environment(os="x", python="3", harness_version="0"))
