"""Warmup stops on count and time, or at thermal steady state, never past max_seconds."""

from __future__ import annotations

import pytest

from harness.backends.base import Backend, GenerationOutput
from harness.energy import GpuSet, PowerSampler
from harness.schema import ExperimentConfig, WarmupConfig
from harness.testing import FakeClock, FakeGpu
from harness.warmup import is_stable, run_warmup, temperature_slope_c_per_min


class ClockedBackend(Backend):
    """Each batch takes one second of fake time; the sampler ticks every second."""

    name = "clocked"

    def __init__(self, clock: FakeClock, sampler: PowerSampler) -> None:
        super().__init__(ExperimentConfig(model="m", backend="pytorch"), "cpu")
        self.clock, self.sampler, self.calls = clock, sampler, 0

    def generate(self, requests, on_batch=None):
        self.calls += 1
        self.clock.advance(1.0)
        self.sampler.sample_now()
        return GenerationOutput([])

    def preflight(self): return []
    def load(self): pass
    def encode(self, text): return []
    def vocab_ids(self): return [1]
    def warmup_requests(self, requests): return requests
    def synchronize(self): pass
    def effective_parameters(self): return {}
    def memory(self): return None
    def parameter_counts(self): return (0, 0)
    def versions(self): return {}


def rig(temperature):
    clock = FakeClock()
    gpus = GpuSet([FakeGpu([(0.0, 300.0), (1e6, 300.0)], clock=clock, temperature_c=temperature)])
    sampler = PowerSampler(gpus, 1000, clock=clock)
    return clock, sampler, ClockedBackend(clock, sampler)


HEATING_THEN_FLAT = [(0.0, 35.0), (120.0, 75.0), (1e6, 75.0)]  # +20 degC/min for 2 min


def test_count_and_min_seconds_both_hold():
    clock, sampler, backend = rig(HEATING_THEN_FLAT)
    record = run_warmup(backend, [], WarmupConfig(n_warmup=3, min_seconds=10), sampler, [0],
                        lambda b, s: None, clock=clock)
    assert record.batches == 10 and record.duration_s == pytest.approx(10.0)
    assert record.stable is None  # not asked
    assert record.temperature_start_c == [35.0]


def test_until_stable_waits_for_a_flat_slope():
    clock, sampler, backend = rig(HEATING_THEN_FLAT)
    record = run_warmup(backend, [], WarmupConfig(n_warmup=1, min_seconds=0, until_stable=True,
                                                  max_seconds=600), sampler, [0],
                        lambda b, s: None, clock=clock)
    assert record.stable is True
    # Flat from t=120 s; the slope over a 30 s window is flat only once it lies past 120 s.
    assert 140 <= record.duration_s <= 160
    assert record.temperature_end_c == [75.0]


def test_until_stable_gives_up_at_max_seconds():
    clock, sampler, backend = rig([(0.0, 35.0), (1e6, 35.0 + 1e6 / 60)])  # +1 degC/min forever
    record = run_warmup(backend, [], WarmupConfig(n_warmup=1, min_seconds=0, until_stable=True,
                                                  max_seconds=90), sampler, [0],
                        lambda b, s: None, clock=clock)
    assert record.stable is False and record.duration_s == pytest.approx(90.0)


def test_until_stable_without_sensor_is_not_assessed():
    clock = FakeClock()
    sampler = PowerSampler(GpuSet(), 1000, clock=clock)
    backend = ClockedBackend(clock, sampler)
    record = run_warmup(backend, [], WarmupConfig(n_warmup=2, min_seconds=0, until_stable=True),
                        sampler, [], lambda b, s: None, clock=clock)
    assert record.batches == 2 and record.stable is None and record.temperature_start_c is None


def test_slope_arithmetic():
    clock, sampler, _ = rig(HEATING_THEN_FLAT)
    for _ in range(30):
        clock.advance(1.0)
        sampler.sample_now()
    assert temperature_slope_c_per_min(sampler.samples(), 0) == pytest.approx(20.0)
    assert not is_stable(sampler.samples(), [0], clock())
