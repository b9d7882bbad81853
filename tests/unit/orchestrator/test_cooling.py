"""gap_until_cool waits for the idle temperature, bounded, and not at all without GPUs."""

from __future__ import annotations

import pytest

from harness.energy import GpuSet
from harness.testing import FakeClock, FakeGpu
from orchestrator.cooling import CoolDown


def test_waits_until_within_margin_of_idle():
    clock = FakeClock()
    # Idle 40 degC at t=0, hot 70 degC after a run, cooling linearly back to 40 by t=200.
    gpu = FakeGpu([(0.0, 60.0), (1e6, 60.0)], clock=clock,
                  temperature_c=[(0.0, 40.0), (1.0, 70.0), (200.0, 40.0), (1e6, 40.0)])
    cool = CoolDown(GpuSet([gpu]), margin_c=3.0, max_s=1e9, poll_s=5.0, clock=clock)
    assert cool.idle_c == [40.0]
    clock.advance(1.0)
    assert not cool.is_cool()

    def tick(seconds: float) -> bool:
        clock.advance(seconds)
        return False

    record = cool.wait(tick)
    assert cool.is_cool()
    assert 175.0 <= clock() <= 190.0  # 43 degC is reached at t ~ 181 s
    assert record.outcome == "reached" and record.waited_s == pytest.approx(clock() - 1.0)
    assert record.idle_c == [40.0] and record.temperature_c[0] <= 43.0
    assert (record.margin_c, record.gpu_indices) == (3.0, [0])


def test_wait_is_bounded_and_interruptible():
    clock = FakeClock()
    gpu = FakeGpu([(0.0, 60.0), (1e6, 60.0)], clock=clock,
                  temperature_c=[(0.0, 40.0), (1.0, 90.0), (1e6, 90.0)])
    cool = CoolDown(GpuSet([gpu]), margin_c=3.0, max_s=30.0, poll_s=1.0, clock=clock)
    clock.advance(2.0)

    def tick(seconds: float) -> bool:
        clock.advance(seconds)
        return False

    record = cool.wait(tick)
    assert record.outcome == "cut_off" and record.waited_s == 30.0 and not cool.is_cool()
    assert record.temperature_c == [90.0] and record.max_s == 30.0
    fresh_clock = FakeClock()
    hot = FakeGpu([(0.0, 60.0), (1e6, 60.0)], clock=fresh_clock,
                  temperature_c=[(0.0, 40.0), (1.0, 90.0), (1e6, 90.0)])
    interrupted = CoolDown(GpuSet([hot]), 3.0, 1e9, clock=fresh_clock)
    fresh_clock.advance(2.0)
    calls = []
    record = interrupted.wait(lambda s: calls.append(s) or True)
    assert calls == [2.0]  # a stop request ends the wait after one poll
    assert record.outcome == "interrupted"


def test_no_gpus_no_wait():
    record = CoolDown(GpuSet(), 3.0, 600.0).wait(lambda s: False)
    assert record.outcome == "no_sensor" and record.waited_s is None


def test_a_gpu_without_a_temperature_is_left_out_by_index():
    clock = FakeClock()
    blind = FakeGpu([(0.0, 60.0)], index=0, clock=clock)
    hot = FakeGpu([(0.0, 60.0)], index=1, clock=clock,
                  temperature_c=[(0.0, 40.0), (1.0, 41.0), (1e6, 41.0)])
    cool = CoolDown(GpuSet([blind, hot]), margin_c=3.0, max_s=10.0, clock=clock)
    clock.advance(2.0)
    record = cool.wait(lambda s: False)
    assert record.outcome == "reached" and record.waited_s == 0.0
    assert record.idle_c == [None, 40.0] and record.temperature_c == [None, 41.0]


def test_the_first_run_has_no_wait_and_says_so():
    clock = FakeClock()
    gpu = FakeGpu([(0.0, 60.0)], clock=clock, temperature_c=[(0.0, 38.0)])
    record = CoolDown(GpuSet([gpu]), 3.0, 600.0, clock=clock).first_run()
    assert record.outcome == "first_run" and record.waited_s is None
    assert record.idle_c == record.temperature_c == [38.0]
