"""Idle power: measured with the counter, cached per GPU and per everything that sets idle
power (power limit, persistence, clocks, driver, a 5 degC temperature band), with a TTL."""

from __future__ import annotations

import pytest

from harness import checks, metrics, sanity
from harness.baseline import BaselineCache, measure_baseline
from harness.energy import EnergyMeter, GpuSet, PowerSampler
from harness.errors import EnergyError
from harness.schema import BaselineConfig, ExperimentConfig, ExperimentResult
from harness.schema.result import Environment, LatencyMetrics, ThroughputMetrics, WarmupRecord
from harness.testing import FakeClock, FakeGpu


def rig(clock: FakeClock, idle_w=(55.0, 70.0), temperature_c=(38.0, 41.0), driver="550.54.15",
        **gpu_options):
    gpus = GpuSet([FakeGpu([(0.0, watts), (1e6, watts)], index=i, clock=clock,
                           temperature_c=[(0.0, temperature_c[i])], **gpu_options)
                   for i, watts in enumerate(idle_w)], driver_version=driver)
    sampler = PowerSampler(gpus, 100, clock=clock)
    return gpus, EnergyMeter(gpus, sampler)


def measure(gpus, meter, clock, cache, duration_s=30.0):
    return measure_baseline(gpus, meter, BaselineConfig(duration_s=duration_s), cache,
                            sleep=clock.advance)


def test_fresh_baseline_is_counter_delta_over_time_and_is_cached(tmp_path):
    clock = FakeClock()
    gpus, meter = rig(clock)
    cache = BaselineCache(tmp_path, ttl_s=3600)
    record = measure(gpus, meter, clock, cache)
    assert record.provenance == "fresh" and record.age_s == 0.0
    assert record.power_w == pytest.approx([55.0, 70.0])
    assert record.duration_s == pytest.approx(30.0)
    assert record.temperature_c == [38.0, 41.0]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2
    assert names[0].startswith("GPU-fake-0-") and names[1].startswith("GPU-fake-1-")


def test_cache_hit_reuses_and_reports_age(tmp_path):
    clock = FakeClock()
    gpus, meter = rig(clock)
    cache = BaselineCache(tmp_path, ttl_s=3600)
    first = measure(gpus, meter, clock, cache)
    slept: list[float] = []
    record = measure_baseline(gpus, meter, BaselineConfig(), cache, sleep=slept.append)
    assert slept == []  # nothing measured
    assert record.provenance == "cached" and record.power_w == first.power_w
    assert 0 <= record.age_s < 3600  # within the TTL, however slow the machine


SAME = {"name": "Fake GPU"}


@pytest.mark.parametrize(
    ("later", "reused"),
    [
        ({"info": SAME}, True),
        ({"info": {"power_limit_w": 500.0}}, False),
        ({"info": {"persistence_mode": False}}, False),
        ({"info": {"applications_graphics_clock_mhz": 1410.0}}, False),
        ({"info": {"applications_memory_clock_mhz": 1593.0}}, False),
        ({"info": {"auto_boost_enabled": True}}, False),
        ({"driver": "560.35.03"}, False),
        ({"temperature_c": (39.9, 44.9)}, True),  # same bands: [35, 40) and [40, 45)
        ({"temperature_c": (40.0, 41.0)}, False),  # GPU 0 moved into the next band
        ({"temperature_c": (38.0, None)}, False),  # GPU 1 lost its temperature reading
    ],
    ids=["nothing", "power_limit", "persistence", "app_graphics_clock", "app_memory_clock",
         "auto_boost", "driver", "same_bands", "other_band", "no_temperature"],
)
def test_a_change_in_what_sets_idle_power_means_the_entry_is_not_used(tmp_path, later, reused):
    clock = FakeClock()
    cache = BaselineCache(tmp_path, ttl_s=3600)
    measure(*rig(clock, info={"applications_graphics_clock_mhz": 1980.0,
                              "applications_memory_clock_mhz": 2619.0,
                              "auto_boost_enabled": False}), clock, cache)
    base = {"info": {"applications_graphics_clock_mhz": 1980.0,
                     "applications_memory_clock_mhz": 2619.0, "auto_boost_enabled": False}}
    options = {**base, **later, "info": {**base["info"], **later.get("info", {})}}
    temperature = options.pop("temperature_c", (38.0, 41.0))
    gpus = GpuSet([FakeGpu([(0.0, 60.0 + i)], index=i, clock=clock, info=options["info"],
                           temperature_c=None if t is None else [(0.0, t)])
                   for i, t in enumerate(temperature)],
                  driver_version=options.get("driver", "550.54.15"))
    record = measure(gpus, EnergyMeter(gpus, PowerSampler(gpus, 100, clock=clock)), clock,
                     cache)
    assert (record.provenance == "cached") is reused
    assert record.power_w == pytest.approx([55.0, 70.0] if reused else [60.0, 61.0])


def test_expired_or_partial_cache_measures_again(tmp_path):
    clock = FakeClock()
    cache = BaselineCache(tmp_path, ttl_s=100)
    gpus, meter = rig(clock)
    measure(gpus, meter, clock, cache, duration_s=10)
    entries = cache.entries()
    keys = [entry.key for entry in entries]
    measured_at = entries[0].measured_at  # wall-clock epoch seconds
    assert cache.get(keys[0], now=measured_at + 99.0) is not None
    assert cache.get(keys[0], now=measured_at + 100.0) is None  # expired at the TTL
    (tmp_path / cache.file_name(keys[1])).unlink()
    assert cache.get_all(keys) is None  # one GPU missing
    record = measure(gpus, meter, clock, cache, duration_s=10)
    assert record.provenance == "fresh"


def test_damaged_entry_is_ignored(tmp_path):
    clock = FakeClock()
    cache = BaselineCache(tmp_path, ttl_s=3600)
    gpus, meter = rig(clock)
    measure(gpus, meter, clock, cache)
    for path in tmp_path.iterdir():
        path.write_text('{"key": {"uuid": "GPU-fake-0"}, "power_w": ', encoding="utf-8")
    assert measure(gpus, meter, clock, cache).provenance == "fresh"


class UnreadableGpu(FakeGpu):
    """A GPU without an energy counter whose every NVML read fails, as one that fell off the
    bus: the sampler records the failures and keeps no sample of it."""

    def sample(self, t_s):
        raise EnergyError("NVML could not read power, clocks and temperature: GPU is lost")


def test_a_gpu_without_any_reading_is_a_clear_error_naming_it(tmp_path):
    clock = FakeClock()
    gpus = GpuSet([FakeGpu([(0.0, 55.0)], index=0, clock=clock),
                   UnreadableGpu([(0.0, 70.0)], index=1, clock=clock, counter_supported=False)])
    meter = EnergyMeter(gpus, PowerSampler(gpus, 100, clock=clock))
    with pytest.raises(EnergyError, match="GPU 1") as caught:
        measure(gpus, meter, clock, BaselineCache(tmp_path, ttl_s=3600))
    assert "GPU 0" not in str(caught.value)
    assert caught.value.fix is not None
    assert list(tmp_path.iterdir()) == []  # nothing cached


# -- a busy baseline is not idle power --------------------------------------------------

IDLE_W, FOREIGN_W, LOAD_W = 70.0, 200.0, 450.0
WINDOW_S = 60.0


def machine(clock, trace, processes=()):
    # the same UUID (GPU-fake-0) in both runs
    gpu = FakeGpu(trace, clock=clock, temperature_c=[(0.0, 38.0)], processes=processes)
    gpus = GpuSet([gpu], driver_version="550.54.15")
    sampler = PowerSampler(gpus, 100, clock=clock)
    return gpus, EnergyMeter(gpus, sampler)


def test_a_baseline_taken_under_a_foreign_process_is_never_cached_for_clean_runs(tmp_path):
    """Run 1 starts while another job still draws 200 W on the GPU. Its 270 W "idle" power
    once went into the cache (keyed only by what sets idle power), and run 2, minutes later
    on the same now-idle GPU, reused it silently: dynamic energy (450 - 270) x 60 = 10,800 J
    instead of (450 - 70) x 60 = 22,800 J (-53 %), with sanity passing. A busy baseline is now
    marked and not cached."""
    cache = BaselineCache(tmp_path, ttl_s=3600)
    config = BaselineConfig(duration_s=30.0)

    clock = FakeClock()
    busy = [(0.0, IDLE_W + FOREIGN_W), (1e6, IDLE_W + FOREIGN_W)]
    gpus, meter = machine(clock, busy, processes=[4242])
    assert "foreign_processes" in [w.code for w in checks.machine_warnings(gpus)]
    first = measure_baseline(gpus, meter, config, cache, sleep=clock.advance)
    assert first.power_w == pytest.approx([IDLE_W + FOREIGN_W])
    assert first.idle_verified is False and first.busy_gpus == [0]

    clock2 = FakeClock(start_s=600.0)
    idle_then_load = [(0.0, IDLE_W), (100.0, IDLE_W), (100.0 + 1e-6, LOAD_W),
                      (1e6, LOAD_W)]
    gpus2, meter2 = machine(clock2, idle_then_load)
    assert checks.machine_warnings(gpus2) == []  # nothing says the GPU was busy
    baseline = measure_baseline(gpus2, meter2, config, cache, sleep=clock2.advance)
    assert baseline.provenance == "fresh" and baseline.idle_verified is True
    clock2.advance(100.0 - (clock2() - 600.0))
    start = meter2.mark()
    for _ in range(int(WINDOW_S * 10)):  # the sampler ticks every 100 ms in the window
        clock2.advance(0.1)
        meter2.sampler.sample_now()
    reading = meter2.between(start, meter2.mark())
    work = ThroughputMetrics(input_tokens=1000, output_tokens=6000, requests=10,
                             duration_s=reading.duration_s, output_tokens_per_s=100.0,
                             requests_per_s=1.0)
    energy = metrics.energy(reading, work, sum(baseline.power_w), 1)
    result = sanity.flag(ExperimentResult(
        run_id="r2", config=ExperimentConfig(model="m", backend="pytorch"),
        measurement_config_hash="0" * 16, effective_parameters={}, started_at="t",
        finished_at="t", energy=energy, throughput=work, latency=LatencyMetrics(),
        warmup=WarmupRecord(batches=1, duration_s=1.0), baseline=baseline,
        environment=Environment(os="x", python="3", harness_version="0",
                                gpus=[gpu.info() for gpu in gpus2]),
    ), has_sensor=True)
    assert result.sanity is not None and result.sanity.passed
    assert result.warnings == []
    true_dynamic_j = (LOAD_W - IDLE_W) * WINDOW_S
    assert energy.energy_dynamic_j == pytest.approx(true_dynamic_j, rel=0.02), (
        f"published {energy.energy_dynamic_j:.0f} J ({baseline.provenance} baseline "
        f"{baseline.power_w} W), true {true_dynamic_j:.0f} J")
