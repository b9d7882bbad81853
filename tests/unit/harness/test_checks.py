from typing import Any

import pytest

from harness.checks import cache_warnings
from harness.schema.config import ExperimentConfig
from harness.schema.result import ThroughputMetrics


def work(cached: int | None) -> ThroughputMetrics:
    return ThroughputMetrics(input_tokens=24_000, output_tokens=800, requests=80, duration_s=10.0,
                             output_tokens_per_s=80.0, requests_per_s=8.0,
                             cached_prompt_tokens=cached)


def config(backend: str, section: dict[str, Any] | None = None) -> ExperimentConfig:
    return ExperimentConfig(model="m", backend=backend, **({backend: section} if section else {}))


def test_cache_hits_nobody_asked_for_are_a_warning_with_the_counts() -> None:
    [warning] = cache_warnings(config("vllm"), work(10_240))

    assert warning.code == "cross_request_cache_hits"
    assert warning.message.startswith("10240 of 24000 prompt tokens in the window")


@pytest.mark.parametrize("cached", [0, None])
def test_no_hits_or_no_report_is_no_warning(cached: int | None) -> None:
    assert cache_warnings(config("vllm"), work(cached)) == []


@pytest.mark.parametrize(("backend", "section"), [
    ("vllm", {"enable_prefix_caching": True}),
    ("tensorrt", {"enable_block_reuse": True}),
])
def test_hits_the_study_asked_for_are_recorded_not_warned(
    backend: str, section: dict[str, Any]
) -> None:
    assert cache_warnings(config(backend, section), work(10_240)) == []


def test_caching_explicitly_off_still_warns_on_hits() -> None:
    assert cache_warnings(config("vllm", {"enable_prefix_caching": False}), work(16)) != []


def window_reading(samples_per_gpu: list[int], errors_per_gpu: list[int]):
    from harness.energy.meter import EnergyReading

    return EnergyReading(duration_s=20.0, energy_j=1.0, energy_per_gpu_j=[1.0],
                         energy_integrated_j=1.0, energy_integrated_per_gpu_j=[1.0],
                         method="nvml_counter", mean_power_w=1.0, samples=200,
                         samples_per_gpu=samples_per_gpu, read_errors_per_gpu=errors_per_gpu)


def measured(*indices: int):
    from harness.energy import GpuSet
    from harness.testing import FakeClock, FakeGpu

    return GpuSet([FakeGpu([(0.0, 100.0)], index=i, clock=FakeClock()) for i in indices])


def codes_and_messages(warnings) -> list[tuple[str, str]]:
    return [(w.code, w.message) for w in warnings]


def test_window_warnings_name_gpus_by_their_index_not_their_position() -> None:
    from harness.checks import window_warnings
    from harness.schema.result import ThermalMetrics

    thermal = ThermalMetrics(temperature_start_c=[40.0], temperature_end_c=[52.0],
                             throttle_reasons_per_gpu=[["hw_thermal_slowdown"]])
    found = codes_and_messages(window_warnings(work(0).model_copy(update={"duration_s": 20.0}),
                                               window_reading([200], [0]), thermal, measured(3)))
    assert ("thermal_drift", "GPU 3 temperature moved 40 -> 52 degC in the window: it was not "
            "at steady state") in found
    assert ("throttling", "GPU 3 slowed its clocks in the window: hw_thermal_slowdown") in found


def test_the_routine_software_power_cap_is_no_throttling_warning() -> None:
    from harness.checks import window_warnings
    from harness.schema.result import ThermalMetrics

    thermal = ThermalMetrics(temperature_start_c=[60.0], temperature_end_c=[61.0],
                             throttle_reasons_seen=["sw_power_cap"],
                             throttle_reasons_per_gpu=[["sw_power_cap"]])
    found = window_warnings(work(0), window_reading([200], [0]), thermal, measured(0))
    assert "throttling" not in [w.code for w in found]


def test_few_samples_counts_successful_reads_per_gpu_not_ticks() -> None:
    from harness.checks import window_warnings

    # 200 ticks, but GPU 1's reads failed on 195 of them
    found = codes_and_messages(window_warnings(work(0), window_reading([200, 5], [0, 195]),
                                               None, measured(0, 1)))
    assert ("few_samples", "GPU 1: only 5 successful power reads in the window (< 10)") in found
    assert any(code == "sampler_read_errors" and message.startswith("GPU 1: 195")
               for code, message in found)
    assert not any(message.startswith("GPU 0") for _, message in found)
