"""Idle power: measured with the counter, cached per GPU and per everything that sets idle
power (power limit, persistence, clocks, driver, a 5 degC temperature band), with a TTL."""

from __future__ import annotations

import pytest

from harness.baseline import BaselineCache, measure_baseline
from harness.energy import EnergyMeter, GpuSet, PowerSampler
from harness.errors import EnergyError
from harness.schema import BaselineConfig
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
    assert 0 <= record.age_s < 5


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
