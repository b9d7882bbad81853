"""Idle power: measured with the counter, cached per GPU UUID with a TTL."""

from __future__ import annotations

import pytest

from harness.baseline import BaselineCache, measure_baseline
from harness.energy import EnergyMeter, GpuSet, PowerSampler
from harness.schema import BaselineConfig
from harness.testing import FakeClock, FakeGpu


def rig(clock: FakeClock, idle_w=(55.0, 70.0)):
    gpus = GpuSet([FakeGpu([(0.0, watts), (1e6, watts)], index=i, clock=clock)
                   for i, watts in enumerate(idle_w)])
    sampler = PowerSampler(gpus, 100, clock=clock)
    return gpus, EnergyMeter(gpus, sampler)


def test_fresh_baseline_is_counter_delta_over_time_and_is_cached(tmp_path):
    clock = FakeClock()
    gpus, meter = rig(clock)
    cache = BaselineCache(tmp_path, ttl_s=3600)
    record = measure_baseline(gpus, meter, BaselineConfig(duration_s=30), cache,
                              sleep=clock.advance)
    assert record.provenance == "fresh" and record.age_s == 0.0
    assert record.power_w == pytest.approx([55.0, 70.0])
    assert record.duration_s == pytest.approx(30.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["GPU-fake-0.json", "GPU-fake-1.json"]


def test_cache_hit_reuses_and_reports_age(tmp_path):
    clock = FakeClock()
    gpus, meter = rig(clock)
    cache = BaselineCache(tmp_path, ttl_s=3600)
    cache.put("GPU-fake-0", 50.0, 30.0)
    cache.put("GPU-fake-1", 60.0, 30.0)
    slept = []
    record = measure_baseline(gpus, meter, BaselineConfig(), cache, sleep=slept.append)
    assert slept == []  # nothing measured
    assert record.provenance == "cached" and record.power_w == [50.0, 60.0]
    assert 0 <= record.age_s < 5


def test_expired_or_partial_cache_measures_again(tmp_path):
    cache = BaselineCache(tmp_path, ttl_s=100)
    entry = cache.put("GPU-fake-0", 50.0, 30.0, now=1000.0)
    assert cache.get("GPU-fake-0", now=1099.0) == entry
    assert cache.get("GPU-fake-0", now=1100.0) is None  # expired at the TTL
    assert cache.get_all(["GPU-fake-0", "GPU-fake-1"], now=1050.0) is None  # one GPU missing
    clock = FakeClock()
    gpus, meter = rig(clock)
    record = measure_baseline(gpus, meter, BaselineConfig(duration_s=10), cache,
                              sleep=clock.advance)
    assert record.provenance == "fresh"


def test_damaged_entry_is_ignored(tmp_path):
    cache = BaselineCache(tmp_path, ttl_s=3600)
    (tmp_path / "GPU-fake-0.json").write_text('{"uuid": "GPU-fake-0", "power_w": ')
    assert cache.get("GPU-fake-0") is None
