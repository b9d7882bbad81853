"""On a real NVIDIA GPU: energy is positive, counter and integration agree, baseline plausible.

Runs the real harness in-process (local, no container) on the tiny model moved to CUDA.
"""

from __future__ import annotations

import pytest

from harness import run_experiment
from harness.schema import ExperimentConfig

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_result(tiny_model_dir, tmp_path_factory):
    config = ExperimentConfig(
        model=str(tiny_model_dir), backend="pytorch", precision="fp16", n=64, input_len=64,
        output_len=64, warmup={"n_warmup": 2, "min_seconds": 5},
        baseline={"duration_s": 5}, pytorch={"batch_size": 8},
    )
    return run_experiment(config, tmp_path_factory.mktemp("gpu") / "run")


def test_energy_is_positive_and_from_the_counter(gpu_result):
    energy = gpu_result.energy
    assert energy.energy_j is not None and energy.energy_j > 0
    assert energy.energy_method == "nvml_counter"
    assert "no_energy_sensor" not in gpu_result.warning_codes()


def test_counter_and_integrated_power_agree(gpu_result):
    energy = gpu_result.energy
    assert energy.energy_integrated_j is not None and energy.energy_j is not None
    assert abs(energy.energy_integrated_j - energy.energy_j) / energy.energy_j < 0.10


def test_baseline_is_plausible(gpu_result):
    baseline = gpu_result.baseline
    assert baseline is not None
    limits = [gpu.power_limit_w for gpu in gpu_result.environment.gpus]
    for idle_w, limit_w in zip(baseline.power_w, limits, strict=True):
        assert 5 < idle_w < (limit_w or 2000)
    assert gpu_result.energy.mean_power_w is not None
    assert gpu_result.energy.mean_power_w > sum(baseline.power_w) * 0.9
