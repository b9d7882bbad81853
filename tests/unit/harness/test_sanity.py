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
    ThermalMetrics,
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


def test_a_short_window_without_a_sensor_is_not_an_energy_failure():
    # no counter to resolve: the run's throughput stays in the statistics (short_window says
    # the window is short); with a sensor the same window fails
    short = result(duration_s=0.5)
    assert sanity.flag(short, has_sensor=False).sanity.passed  # type: ignore[union-attr]
    with_sensor = sanity.flag(result(100.0, 200.0, duration_s=0.5), has_sensor=True)
    assert not with_sensor.sanity.passed  # type: ignore[union-attr]


def gpu_result(energy_j, integrated_j, duration_s=20.0, util_max=50.0, idle_w=None,
               reads=200, errors=0, dynamic_j=None):
    base = result(energy_j, energy_j / duration_s, duration_s=duration_s, idle_w=idle_w,
                  limit_w=700.0)
    energy = base.energy.model_copy(update={
        "energy_integrated_per_gpu_j": [integrated_j], "energy_integrated_j": integrated_j,
        "energy_method": "nvml_counter", "power_samples_per_gpu": [reads],
        "sampler_read_errors_per_gpu": [errors], "energy_dynamic_j": dynamic_j})
    thermal = ThermalMetrics(gpu_util_pct_max=[util_max])
    gpus = [base.environment.gpus[0].model_copy(update={"index": 3})]
    return base.model_copy(update={"energy": energy, "thermal": thermal,
                                   "environment": base.environment.model_copy(
                                       update={"gpus": gpus})})


def failures(candidate):
    flagged = sanity.flag(candidate, has_sensor=True)
    assert flagged.sanity is not None
    return " | ".join(flagged.sanity.failed_checks)


def test_a_busy_gpu_passes_every_per_gpu_check():
    assert failures(gpu_result(6000.0, 6100.0, idle_w=70.0, dynamic_j=4600.0)) == ""


def test_a_measured_gpu_that_stayed_idle_is_caught_by_its_index():
    # 20 s at the GPU's own idle power (70 W), never a kernel: the model ran elsewhere.
    text = failures(gpu_result(1400.0, 1400.0, util_max=0.0, idle_w=70.0, dynamic_j=0.0))
    assert "GPU 3 stayed idle (70.0 W, idle 70.0 W, 0 % utilisation" in text
    # the same power with kernels running is a light load, not an idle GPU
    assert "stayed idle" not in failures(gpu_result(1400.0, 1400.0, util_max=35.0, idle_w=70.0))


def test_a_counter_that_stood_still_while_power_was_drawn_fails():
    text = failures(gpu_result(0.5, 6000.0))
    assert "GPU 3's energy counter moved 0.500 J while its sampled power integrates to 6000.0 J" \
        in text


def test_a_gpu_the_sampler_could_not_read_fails_on_its_successful_reads_not_ticks():
    text = failures(gpu_result(6000.0, 6000.0, reads=4, errors=196))
    assert "GPU 3: only 4 successful power reads in the window (196 failed)" in text
    assert "successful power reads" not in failures(gpu_result(6000.0, 6000.0, reads=4))


def test_negative_dynamic_energy_fails():
    text = failures(gpu_result(6000.0, 6000.0, idle_w=290.0, dynamic_j=-200.0))
    assert "dynamic energy -200.0 J is negative" in text
    assert "negative" not in failures(gpu_result(6000.0, 6000.0, idle_w=290.0, dynamic_j=-60.0))


def test_counter_and_sampled_power_far_apart_fail_on_a_long_window_only():
    assert "are 20% apart (over 10%" in failures(gpu_result(5000.0, 6000.0))
    assert "apart" not in failures(gpu_result(5000.0, 5400.0))  # 8 %: a warning, not a failure
    assert "apart" not in failures(gpu_result(500.0, 600.0, duration_s=2.0))
    # a coarse sampler (a few reads) integrates too roughly to fail a run on it
    assert "apart" not in failures(gpu_result(5000.0, 6000.0, reads=12))


def test_a_serving_run_with_failed_requests_is_flagged_and_one_without_is_not():
    from harness.schema.result import ServingMetrics

    def serving(failed: int) -> ServingMetrics:
        return ServingMetrics(
            client="in_process", arrival="poisson", request_rate_rps=4.0, seed=1,
            ramp_up_s=5.0, window_s=20.0, drain_s=1.0, requests_total=100,
            requests_in_window=80, requests_completed_in_window=80 - failed,
            requests_failed=failed, offered_rate_rps=4.0, sent_rate_rps=4.0,
            achieved_rate_rps=(80 - failed) / 20, output_tokens_in_window=1000,
            output_tokens_per_s=50.0, saturated=False)

    clean = result(4000.0, 200.0, idle_w=60.0, limit_w=700.0)
    clean.serving = serving(0)
    assert sanity.flag(clean, has_sensor=True).sanity.passed

    failing = result(4000.0, 200.0, idle_w=60.0, limit_w=700.0)
    failing.serving = serving(3)
    flagged = sanity.flag(failing, has_sensor=True)
    assert not flagged.sanity.passed
    assert any("3 of 100 serving requests failed" in f for f in flagged.sanity.failed_checks)
