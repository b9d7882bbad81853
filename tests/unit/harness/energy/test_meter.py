import pytest

from harness.energy.device import EMPTY_GPUS, GpuSet
from harness.energy.meter import EnergyMeter
from harness.energy.sampler import PowerSampler
from harness.errors import CounterWentBackwards, EnergyError
from harness.testing import FakeClock, FakeGpu


def setup(*traces, **fake_kwargs):
    """A meter over one FakeGpu per trace, all on one manual clock."""
    clock = FakeClock()
    gpus = GpuSet([FakeGpu(trace, index=i, clock=clock, **fake_kwargs)
                   for i, trace in enumerate(traces)])
    sampler = PowerSampler(gpus, interval_ms=1000, clock=clock)
    return clock, sampler, EnergyMeter(gpus, sampler)


def tick_for(clock, sampler, seconds, step_s=1.0):
    """Sample every step_s for `seconds`, including both ends."""
    for _ in range(round(seconds / step_s)):
        sampler.sample_now()
        clock.advance(step_s)
    sampler.sample_now()


def measure(clock, sampler, meter, seconds, step_s=1.0):
    start = meter.mark()
    tick_for(clock, sampler, seconds, step_s)
    return meter.between(start, meter.mark())


def spike(height_w):
    """100 W with a 0.2 s triangular spike at 5.5 s, between two 1 s samples."""
    return [(0.0, 100.0), (5.4, 100.0), (5.5, 100.0 + height_w), (5.6, 100.0)]


def codes(reading):
    return [w.code for w in reading.warnings]


def test_counter_deltas_are_summed_over_gpus():
    clock, sampler, meter = setup([(0.0, 100.0)], [(0.0, 200.0)], [(0.0, 50.0)])
    reading = measure(clock, sampler, meter, 10.0)
    assert reading.energy_per_gpu_j == pytest.approx([1000.0, 2000.0, 500.0])
    assert reading.energy_j == pytest.approx(3500.0)
    assert reading.method == "nvml_counter"
    assert reading.duration_s == pytest.approx(10.0)
    assert reading.mean_power_w == pytest.approx(350.0)
    assert reading.samples == 11
    assert reading.warnings == []


def test_mark_reads_every_counter_and_the_clock():
    clock, _, meter = setup([(0.0, 100.0)], [(0.0, 200.0)], counter_offset_j=7.0)
    clock.advance(2.0)
    mark = meter.mark()
    assert mark.t_s == 2.0
    assert mark.counters_j == pytest.approx((207.0, 407.0))


def test_a_counter_that_goes_backwards_is_an_error_not_energy():
    clock, sampler, meter = setup([(0.0, 100.0)], counter_offset_j=10_000.0,
                                  backwards_at_s=5.0, backwards_by_j=9_000.0)
    start = meter.mark()
    tick_for(clock, sampler, 10.0)
    with pytest.raises(CounterWentBackwards, match="backwards"):
        meter.between(start, meter.mark())


def test_a_reset_inside_the_window_is_caught_even_if_the_net_delta_is_positive():
    # 100 W for 10 s adds 1000 J; a 500 J drop at 5 s leaves the edges 500 J apart.
    clock, sampler, meter = setup([(0.0, 100.0)], counter_offset_j=10_000.0,
                                  backwards_at_s=5.0, backwards_by_j=500.0)
    start = meter.mark()
    tick_for(clock, sampler, 10.0)
    end = meter.mark()
    assert end.counters_j[0] - start.counters_j[0] == pytest.approx(500.0)
    with pytest.raises(CounterWentBackwards):
        meter.between(start, end)


def test_a_counter_wrap_is_unwrapped():
    clock, sampler, meter = setup([(0.0, 100.0)], counter_offset_j=9_900.0,
                                  counter_wrap_j=10_000.0)
    start = meter.mark()
    tick_for(clock, sampler, 10.0)
    end = meter.mark()
    assert end.counters_j[0] < start.counters_j[0]
    reading = meter.between(start, end)
    assert reading.energy_j == pytest.approx(1000.0)
    assert reading.method == "nvml_counter"


def test_a_wrap_between_two_marks_without_samples_is_unwrapped():
    clock, _, meter = setup([(0.0, 100.0)], counter_offset_j=9_900.0, counter_wrap_j=10_000.0)
    start = meter.mark()
    clock.advance(3.0)
    assert meter.between(start, meter.mark()).energy_j == pytest.approx(300.0)


def test_disagreement_over_five_percent_warns_with_both_figures():
    # counter: 1000 J + 90 J spike; sampled power misses the spike: 1000 J (8.3 % apart)
    clock, sampler, meter = setup(spike(900.0))
    reading = measure(clock, sampler, meter, 10.0)
    assert reading.energy_j == pytest.approx(1090.0)
    assert reading.energy_integrated_j == pytest.approx(1000.0)
    assert codes(reading) == ["energy_disagreement"]
    assert "1090.000 J" in reading.warnings[0].message
    assert "1000.000 J" in reading.warnings[0].message


def test_disagreement_under_five_percent_gives_no_warning():
    # 40 J spike on 1000 J: 3.8 % apart
    clock, sampler, meter = setup(spike(400.0))
    reading = measure(clock, sampler, meter, 10.0)
    assert reading.energy_j == pytest.approx(1040.0)
    assert reading.energy_integrated_j == pytest.approx(1000.0)
    assert reading.warnings == []


def test_integration_is_cut_to_the_window_and_interpolated_at_its_edges():
    clock, sampler, meter = setup([(0.0, 0.0), (10.0, 1000.0)])
    sampler.sample_now()
    clock.advance(1.0)
    sampler.sample_now()
    clock.advance(1.5)
    start = meter.mark()  # t = 2.5 s, between ticks
    clock.advance(0.5)
    tick_for(clock, sampler, 4.0)  # ticks at 3..7 s
    clock.advance(0.5)
    end = meter.mark()  # t = 7.5 s
    clock.advance(0.5)
    sampler.sample_now()  # t = 8 s, after the window
    reading = meter.between(start, end)
    # a linear ramp integrates exactly: 5 s x (250 + 750) / 2 W
    assert reading.energy_integrated_per_gpu_j == pytest.approx([2500.0])
    assert reading.energy_j == pytest.approx(2500.0)
    assert reading.samples == 5


def test_gpu_without_a_counter_falls_back_to_integration():
    clock, sampler, meter = setup([(0.0, 100.0), (10.0, 300.0)], counter_supported=False)
    reading = measure(clock, sampler, meter, 10.0)
    assert reading.method == "nvml_power_integration"
    assert reading.energy_j == pytest.approx(2000.0)
    assert reading.energy_j == reading.energy_integrated_j


def test_one_gpu_without_a_counter_makes_the_whole_reading_integrated():
    clock = FakeClock()
    gpus = GpuSet([FakeGpu([(0.0, 100.0)], index=0, clock=clock),
                   FakeGpu([(0.0, 200.0)], index=1, clock=clock, counter_supported=False)])
    sampler = PowerSampler(gpus, interval_ms=1000, clock=clock)
    reading = measure(clock, sampler, EnergyMeter(gpus, sampler), 10.0)
    assert reading.method == "nvml_power_integration"
    assert reading.energy_per_gpu_j == pytest.approx([1000.0, 2000.0])


def test_empty_gpu_set_gives_null_energy():
    clock = FakeClock()
    sampler = PowerSampler(EMPTY_GPUS, interval_ms=100, clock=clock)
    meter = EnergyMeter(EMPTY_GPUS, sampler)
    start = meter.mark()
    clock.advance(5.0)
    reading = meter.between(start, meter.mark())
    assert reading.duration_s == 5.0
    assert reading.energy_j is None
    assert reading.energy_per_gpu_j is None
    assert reading.energy_integrated_j is None
    assert reading.energy_integrated_per_gpu_j is None
    assert reading.mean_power_w is None
    assert reading.method is None
    assert codes(reading) == []  # the run says why: no GPU, or energy.backend none


def test_end_before_start_is_rejected():
    clock, _, meter = setup([(0.0, 100.0)])
    start = meter.mark()
    clock.advance(1.0)
    end = meter.mark()
    with pytest.raises(ValueError):
        meter.between(end, start)


def test_energy_at_times_interpolates_the_counter_between_samples():
    clock, sampler, meter = setup([(0.0, 100.0)], [(0.0, 300.0)])
    tick_for(clock, sampler, 10.0)
    assert meter.energy_at_times(2.5, 7.5) == pytest.approx(2000.0)


def test_energy_at_times_splits_a_window_into_parts_that_add_up():
    clock, sampler, meter = setup([(0.0, 100.0), (4.0, 500.0), (10.0, 200.0)])
    start = meter.mark()
    tick_for(clock, sampler, 10.0, step_s=0.5)
    end = meter.mark()
    window_j = meter.between(start, end).energy_j
    prefill_j = meter.energy_at_times(0.0, 3.2)
    decode_j = meter.energy_at_times(3.2, 10.0)
    assert prefill_j + decode_j == pytest.approx(window_j)
    assert prefill_j < decode_j


def test_energy_at_times_uses_marks_when_no_tick_was_taken():
    clock, _, meter = setup([(0.0, 100.0)])
    meter.mark()
    clock.advance(4.0)
    meter.mark()
    assert meter.energy_at_times(1.0, 3.0) == pytest.approx(200.0)


def test_energy_at_times_falls_back_to_integration_without_counter():
    clock, sampler, meter = setup([(0.0, 100.0)], counter_supported=False)
    tick_for(clock, sampler, 10.0)
    assert meter.energy_at_times(2.0, 4.0) == pytest.approx(200.0)


def test_energy_at_times_raises_only_when_the_span_holds_a_backwards_step():
    clock, sampler, meter = setup([(0.0, 100.0)], counter_offset_j=10_000.0,
                                  backwards_at_s=5.0, backwards_by_j=9_000.0)
    tick_for(clock, sampler, 10.0)
    assert meter.energy_at_times(6.0, 9.0) == pytest.approx(300.0)
    with pytest.raises(CounterWentBackwards):
        meter.energy_at_times(3.0, 7.0)


def test_energy_at_times_without_gpus_is_an_error():
    meter = EnergyMeter(EMPTY_GPUS, PowerSampler(EMPTY_GPUS, interval_ms=100))
    with pytest.raises(EnergyError, match="no NVIDIA GPU|No NVIDIA GPU"):
        meter.energy_at_times(0.0, 1.0)
