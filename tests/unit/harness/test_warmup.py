"""Warmup: count and time, a steady-state rule that whole-degree readings cannot fool, and a
first pass over the whole warmup set (every batch shape) before the first batch is repeated."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from harness.backends.base import Backend, GenerationOutput, Request
from harness.energy import GpuSet, PowerSampler
from harness.energy.device import GpuSample
from harness.schema import ExperimentConfig, WarmupConfig
from harness.schema.result import WarmupRecord
from harness.testing import FakeClock, FakeGpu
from harness.warmup import (
    STABLE_WINDOW_S,
    final_slopes,
    is_stable,
    run_warmup,
    trend,
)

SAMPLE_S = 0.1  # the sampler's default period, as on a real run


class SampledBackend(Backend):
    """Static batches of ``rows`` requests, each taking ``batch_s`` of fake time during which
    the sampler ticks every 100 ms; ``on_batch`` is called after each batch, as PyTorch does."""

    name = "sampled"

    def __init__(self, clock: FakeClock, sampler: PowerSampler, batch_s: float = 1.0,
                 rows: int | None = None) -> None:
        super().__init__(ExperimentConfig(model="m", backend="pytorch"), "cpu")
        self.clock, self.sampler, self.batch_s, self.rows = clock, sampler, batch_s, rows
        self.calls: list[list[Request]] = []

    def generate(self, requests, on_batch=None):
        self.calls.append(list(requests))
        rows = self.rows or max(len(requests), 1)
        done = 0
        for first in range(0, max(len(requests), 1), rows):
            for _ in range(round(self.batch_s / SAMPLE_S)):
                # to the next whole tick, so that 0.1 s steps do not drift in binary
                self.clock.advance(round(self.clock() + SAMPLE_S, 6) - self.clock())
                self.sampler.sample_now()
            done = min(first + rows, len(requests))
            if on_batch is not None:
                on_batch(done, len(requests))
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


FLAT_POWER = [(0.0, 300.0), (1e6, 300.0)]


def rig(temperature, power=FLAT_POWER, batch_s=1.0, rows=None, whole_degrees=True):
    clock = FakeClock()
    gpu = FakeGpu(power, clock=clock, temperature_c=temperature,
                  temperature_whole_degrees=whole_degrees)
    sampler = PowerSampler(GpuSet([gpu]), SAMPLE_S * 1000, clock=clock)
    return clock, sampler, SampledBackend(clock, sampler, batch_s, rows), gpu


def warm(backend, sampler, clock, requests=(), **config):
    settings = {"n_warmup": 1, "min_seconds": 0, **config}
    return run_warmup(backend, list(requests), WarmupConfig(**settings), sampler, [0],
                      lambda batches, elapsed_s: None, clock=clock)


def first_order(start_c, rise_c, tau_s, until_s=4000.0):
    """A GPU heating towards an asymptote: start + rise x (1 - exp(-t / tau))."""
    return [(t, start_c + rise_c * (1 - math.exp(-t / tau_s))) for t in np.arange(0.0, until_s)]


def flicker(level_c, spread_c, until_s=2000.0, seed=3):
    """A flat temperature whose sensor noise straddles integer boundaries (+-1 degree)."""
    rng = random.Random(seed)
    return [(t, level_c + rng.uniform(-spread_c, spread_c))
            for t in np.arange(0.0, until_s, SAMPLE_S)]


def old_rule_first_says_stable_at(samples: list[GpuSample]) -> float:
    """When the rule this module used before first held, judged every second: a least-squares
    slope over the last 30 s within 0.5 degC/min, with at least 24 s of history."""
    times, temperatures = np.asarray([(s.t_s, s.temperature_c) for s in samples]).T
    for now_s in np.arange(24.0, times[-1], 1.0):
        recent = (times >= now_s - 30.0) & (times <= now_s)
        fit = np.polyfit(times[recent] - times[recent][0], temperatures[recent], 1)
        if abs(fit[0] * 60.0) <= 0.5:
            return float(now_s)
    raise AssertionError("the old rule never held")


# -- count and time ------------------------------------------------------------------------


def test_count_and_min_seconds_both_hold():
    clock, sampler, backend, _ = rig([(0.0, 35.0), (120.0, 75.0), (1e6, 75.0)])
    record = warm(backend, sampler, clock, n_warmup=3, min_seconds=10)
    assert record.batches == 10 and record.duration_s == pytest.approx(10.0)
    assert record.stable is None  # not asked
    assert record.temperature_start_c == [35.0]


def test_without_until_stable_the_final_slopes_are_still_recorded():
    # +20 degC/min for 2 min: after 30 s of warmup the slope over those 30 s is ~20 degC/min.
    clock, sampler, backend, _ = rig([(0.0, 35.0), (120.0, 75.0), (1e6, 75.0)],
                                     power=[(0.0, 300.0), (600.0, 360.0)])
    record = warm(backend, sampler, clock, n_warmup=1, min_seconds=30)
    assert record.stable is None
    assert record.stability_window_s == pytest.approx(30.0, abs=0.2)
    assert record.temperature_slope_c_per_min == [pytest.approx(20.0, rel=0.05)]
    # 6 W/min on ~303 W of mean batch power
    assert record.power_slope_pct_per_min == [pytest.approx(100 * 6.0 / 303.0, rel=0.02)]


def test_until_stable_gives_up_at_max_seconds():
    clock, sampler, backend, _ = rig([(0.0, 35.0), (1e6, 35.0 + 1e6 / 60)])  # +1 degC/min
    record = warm(backend, sampler, clock, until_stable=True, max_seconds=200)
    assert record.stable is False and record.duration_s == pytest.approx(200.0)
    assert record.temperature_slope_c_per_min == [pytest.approx(1.0, abs=0.15)]


def test_until_stable_without_sensor_is_not_assessed():
    clock = FakeClock()
    sampler = PowerSampler(GpuSet(), 1000, clock=clock)
    backend = SampledBackend(clock, sampler)
    record = run_warmup(backend, [], WarmupConfig(n_warmup=2, min_seconds=0, until_stable=True),
                        sampler, [], lambda b, s: None, clock=clock)
    assert record.batches == 2 and record.stable is None and record.temperature_start_c is None
    assert record.temperature_slope_c_per_min is None and record.power_slope_pct_per_min is None


# -- steady state --------------------------------------------------------------------------


def test_a_slow_whole_degree_warmup_is_not_called_stable_while_degrees_remain():
    # tau = 4 min, 45 degC of rise, whole-degree readings every 100 ms: the old 30 s slope rule
    # sees long runs of one integer value and calls it flat with >= 5 degC still to come.
    start_c, rise_c, tau_s = 35.0, 45.0, 240.0
    clock, sampler, backend, _ = rig(first_order(start_c, rise_c, tau_s))
    record = warm(backend, sampler, clock, until_stable=True, max_seconds=3000)

    old_says_stable_at = old_rule_first_says_stable_at(sampler.samples())
    remaining = lambda t_s: rise_c * math.exp(-t_s / tau_s)  # noqa: E731 - still to rise (degC)
    assert remaining(old_says_stable_at) >= 5.0  # the scenario of the issue
    assert record.stable is True
    assert remaining(record.duration_s) < 2.0
    assert abs(record.temperature_slope_c_per_min[0]) <= 0.5


def test_a_flat_trace_with_integer_flicker_is_stable_after_the_window_and_its_checks():
    clock, sampler, backend, _ = rig(flicker(65.5, 0.9))
    assert {s.temperature_c for s in (sampler.sample_now().samples)} <= {64.0, 65.0, 66.0}
    record = warm(backend, sampler, clock, until_stable=True, max_seconds=600)
    readings = {s.temperature_c for s in sampler.samples()}
    assert readings == {64.0, 65.0, 66.0}  # +-1 degree around 65
    assert record.stable is True
    # 120 s window, checked at its end and 10, 20 and 30 s earlier, all inside warmup
    assert STABLE_WINDOW_S + 30.0 <= record.duration_s <= STABLE_WINDOW_S + 35.0
    assert abs(record.temperature_slope_c_per_min[0]) < 0.3


def test_power_that_still_drifts_is_not_steady_though_temperature_is_flat():
    # +15 W/min from 300 W (clocks settling under a power cap, say); temperature flat.
    clock, sampler, backend, _ = rig([(0.0, 70.0), (1e6, 70.0)],
                                     power=[(0.0, 300.0), (3600.0, 1200.0)])
    record = warm(backend, sampler, clock, until_stable=True, max_seconds=300)
    assert record.stable is False
    mean_w = 300.0 + 0.25 * (300.0 - 60.0)  # mean batch power over the last 120 s
    assert record.power_slope_pct_per_min == [pytest.approx(100 * 15.0 / mean_w, rel=0.02)]


def test_a_batch_shaped_power_pattern_is_not_drift():
    # 20 s batches: 6 s of prefill at 650 W, then decode at 250 W. A least-squares line
    # through the raw samples of a 120 s window tilts by -8 to +11 %/min with the partial
    # batches at its edges; the mean power of whole batches does not tilt at all.
    period_s, pattern = 20.0, []
    for start_s in np.arange(0.0, 2000.0, period_s):
        pattern += [(start_s, 650.0), (start_s + 6.0, 650.0), (start_s + 6.0001, 250.0),
                    (start_s + period_s - 0.0001, 250.0)]
    clock, sampler, backend, _ = rig(flicker(70.5, 0.6), power=pattern, batch_s=period_s)
    record = warm(backend, sampler, clock, until_stable=True, max_seconds=600)
    assert record.stable is True and record.duration_s <= STABLE_WINDOW_S + 30.0 + 2 * period_s
    assert abs(record.power_slope_pct_per_min[0]) < 0.2


def test_the_cut_short_message_names_each_gpu_by_index_with_its_slopes():
    record = WarmupRecord(batches=3, duration_s=600.0, stable=False,
                          temperature_slope_c_per_min=[1.234, None],
                          power_slope_pct_per_min=[None, -2.5])
    assert final_slopes(record, [0, 3]) == (
        "GPU 0: 1.23 degC/min, power n/a %/min; GPU 3: n/a degC/min, power -2.50 %/min")


def samples_of(temperature_at, until_s, power_w=300.0):
    return [GpuSample(gpu_index=0, t_s=t, power_w=power_w, energy_counter_j=None,
                      temperature_c=temperature_at(t)) for t in np.arange(0.0, until_s, SAMPLE_S)]


def test_the_rule_must_hold_at_every_one_of_the_consecutive_checks():
    # One whole-degree step at t = 65 s: the window ending at 180 s sees it near its start
    # (slope ~0.1 degC/min), the one ending at 150 s sees it a third of the way in (~0.6).
    samples = samples_of(lambda t: 70.0 if t < 65.0 else 71.0, 180.05)
    edges = [(float(t), float(t) + 1.0) for t in range(0, 180)]
    latest = trend(samples, edges, 0, 60.0, 180.0)
    earlier = trend(samples, edges, 0, 30.0, 150.0)
    assert latest.temperature_slope_c_per_min is not None
    assert earlier.temperature_slope_c_per_min is not None
    assert abs(latest.temperature_slope_c_per_min) <= 0.5 < earlier.temperature_slope_c_per_min
    assert not is_stable(samples, edges, [0], now_s=180.0, since_s=0.0)
    # Windows must be covered by readings: these stop at 180 s, a window ending at 215 s
    # would otherwise judge 85 s of flat readings as 120 s.
    assert not is_stable(samples, edges, [0], now_s=215.0, since_s=0.0)
    flat_until = samples_of(lambda t: 70.0 if t < 65.0 else 71.0, 300.05)
    edges = [(float(t), float(t) + 1.0) for t in range(0, 300)]
    assert is_stable(flat_until, edges, [0], now_s=300.0, since_s=0.0)


def test_no_verdict_before_the_window_and_its_checks_lie_inside_warmup():
    samples = samples_of(lambda t: 70.0, 400.05)
    edges = [(float(t), float(t) + 1.0) for t in range(0, 400)]
    assert not is_stable(samples, edges, [0], now_s=149.0, since_s=0.0)
    assert is_stable(samples, edges, [0], now_s=150.0, since_s=0.0)
    assert not is_stable(samples, edges, [0], now_s=300.0, since_s=200.0)  # warmup began late


# -- the first pass covers every shape -----------------------------------------------------


def request(i: int, length: int) -> Request:
    return Request(i, [1] * length, 4)


def test_the_first_pass_runs_the_whole_warmup_set_then_its_first_batch_repeats():
    clock, sampler, backend, _ = rig([(0.0, 40.0), (1e6, 40.0)], rows=2)
    warmup_set = [request(0, 8), request(1, 8), request(2, 5), request(3, 3), request(4, 6)]
    record = warm(backend, sampler, clock, warmup_set, n_warmup=5)
    assert backend.calls[0] == warmup_set  # one batch of every shape: 3 static batches
    assert backend.calls[1:] == [warmup_set[:2], warmup_set[:2]]
    assert record.batches == 5


def test_the_first_pass_is_not_skipped_when_it_alone_exceeds_the_count():
    clock, sampler, backend, _ = rig([(0.0, 40.0), (1e6, 40.0)], rows=1)
    warmup_set = [request(i, 4 + i) for i in range(4)]
    record = warm(backend, sampler, clock, warmup_set, n_warmup=1)
    assert backend.calls == [warmup_set] and record.batches == 4
