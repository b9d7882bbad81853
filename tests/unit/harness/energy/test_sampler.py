import threading
import time

import pytest

from harness.energy.device import EMPTY_GPUS, GpuSample, GpuSet
from harness.energy.sampler import MAX_KEPT_ERRORS, PowerSampler, next_deadline_s
from harness.errors import EnergyError
from harness.testing import FakeClock, FakeGpu

THREAD_NAME = "llem-power-sampler"


class BrokenGpu(FakeGpu):
    """A GPU whose every read fails, as a GPU that fell off the bus would."""

    def sample(self, t_s: float) -> GpuSample:
        raise EnergyError("GPU is lost")


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def two_gpus(clock) -> GpuSet:
    return GpuSet([FakeGpu([(0.0, 100.0)], index=0, clock=clock),
                   FakeGpu([(0.0, 200.0)], index=1, clock=clock)])


@pytest.mark.parametrize(
    ("now_s", "expected_s"),
    [(0.05, 0.1), (0.1, 0.2), (0.37, 0.4), (-1.0, 0.1)],
)
def test_next_deadline_is_on_the_grid_and_skips_missed_ticks(now_s, expected_s):
    assert next_deadline_s(0.0, 0.1, now_s) == pytest.approx(expected_s)


def test_next_deadline_does_not_drift_over_many_ticks():
    start_s = 12.0
    deadline = next_deadline_s(start_s, 0.1, start_s + 10_000 * 0.1 + 0.03)
    assert deadline == pytest.approx(start_s + 10_001 * 0.1)


def test_sample_now_labels_ticks_with_the_current_phase():
    clock = FakeClock()
    sampler = PowerSampler(two_gpus(clock), interval_ms=100, clock=clock, phase="baseline")
    sampler.sample_now()
    clock.advance(1.0)
    sampler.set_phase("measure")
    sampler.sample_now()
    batches = sampler.batches()
    assert [b.phase for b in batches] == ["baseline", "measure"]
    assert [b.t_s for b in batches] == [0.0, 1.0]
    assert [s.power_w for s in batches[1].samples] == [100.0, 200.0]


def test_samples_are_a_copy_and_can_be_cut_to_a_window():
    clock = FakeClock()
    sampler = PowerSampler(two_gpus(clock), interval_ms=100, clock=clock)
    for _ in range(5):
        sampler.sample_now()
        clock.advance(1.0)
    copy = sampler.samples()
    copy.clear()
    assert len(sampler.samples()) == 10
    window = sampler.samples_between(1.0, 3.0)
    assert sorted({s.t_s for s in window}) == [1.0, 2.0, 3.0]
    assert len(window) == 6


def test_sink_receives_phase_and_samples_of_each_tick():
    clock = FakeClock()
    received = []
    sampler = PowerSampler(two_gpus(clock), interval_ms=100, clock=clock,
                           sink=lambda phase, samples: received.append((phase, samples)))
    sampler.set_phase("warmup")
    sampler.sample_now()
    assert len(received) == 1
    phase, samples = received[0]
    assert phase == "warmup"
    assert [s.gpu_index for s in samples] == [0, 1]


def test_a_failing_read_is_recorded_and_other_gpus_are_still_sampled():
    clock = FakeClock()
    gpus = GpuSet([BrokenGpu([(0.0, 1.0)], index=0, clock=clock),
                   FakeGpu([(0.0, 150.0)], index=1, clock=clock)])
    sampler = PowerSampler(gpus, interval_ms=100, clock=clock)
    batch = sampler.sample_now()
    assert [s.gpu_index for s in batch.samples] == [1]
    assert sampler.error_count == 1
    assert sampler.errors[0].gpu_index == 0
    assert isinstance(sampler.errors[0].error, EnergyError)


def test_a_failing_sink_is_recorded_not_raised():
    clock = FakeClock()

    def sink(phase, samples):
        raise OSError("disk full")

    sampler = PowerSampler(two_gpus(clock), interval_ms=100, clock=clock, sink=sink)
    sampler.sample_now()
    assert [(e.gpu_index, type(e.error)) for e in sampler.errors] == [(None, OSError)]


def test_only_the_first_errors_are_kept_but_all_are_counted():
    clock = FakeClock()
    gpus = GpuSet([BrokenGpu([(0.0, 1.0)], clock=clock)])
    sampler = PowerSampler(gpus, interval_ms=100, clock=clock)
    for _ in range(MAX_KEPT_ERRORS + 5):
        sampler.sample_now()
    assert len(sampler.errors) == MAX_KEPT_ERRORS
    assert sampler.error_count == MAX_KEPT_ERRORS + 5


def wait_until(condition, limit_s=60.0):
    """Poll ``condition`` until it holds; the limit only catches a hang, never a slow machine."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "the sampler thread made no progress"
        time.sleep(0.005)


def test_thread_samples_on_schedule_until_stopped():
    sampler = PowerSampler(two_gpus(time.perf_counter), interval_ms=5)
    sampler.start()
    wait_until(lambda: len(sampler.batches()) >= 4)
    sampler.stop()
    batches = sampler.batches()
    assert len(batches) >= 5  # the ticks seen, and the final one at stop
    times = [b.t_s for b in batches]
    assert times == sorted(times)


def test_start_and_stop_are_idempotent_and_leave_no_thread():
    before = len(sampler_threads())
    sampler = PowerSampler(two_gpus(time.perf_counter), interval_ms=5)
    sampler.start()
    sampler.start()
    assert len(sampler_threads()) == before + 1
    assert sampler.running
    sampler.stop()
    count_after_first_stop = len(sampler.batches())
    sampler.stop()
    assert len(sampler.batches()) == count_after_first_stop
    assert len(sampler_threads()) == before
    assert not sampler.running


def test_stop_takes_a_final_sample_at_stop_time():
    sampler = PowerSampler(two_gpus(time.perf_counter), interval_ms=60_000)
    sampler.start()
    wait_until(lambda: len(sampler.batches()) == 1)  # the tick at start; the next is a minute away
    stop_called_s = time.perf_counter()
    sampler.stop()
    batches = sampler.batches()
    assert len(batches) == 2
    assert batches[-1].t_s >= stop_called_s


def test_the_thread_keeps_going_after_read_errors():
    gpus = GpuSet([BrokenGpu([(0.0, 1.0)], clock=time.perf_counter)])
    sampler = PowerSampler(gpus, interval_ms=5)
    with sampler:
        wait_until(lambda: sampler.error_count >= 3)
        assert sampler.running
    assert sampler.error_count >= 4  # the failed ticks, and the final one at stop
    assert sampler_threads() == []


def test_empty_gpu_set_starts_no_thread_and_records_nothing():
    sampler = PowerSampler(EMPTY_GPUS, interval_ms=5)
    sampler.start()
    assert not sampler.running
    assert sampler_threads() == []
    sampler.stop()
    sampler.stop()
    assert sampler.samples() == []
    assert sampler.batches() == []


def test_interval_must_be_positive():
    with pytest.raises(ValueError):
        PowerSampler(EMPTY_GPUS, interval_ms=0)


def test_two_callers_publish_ticks_in_the_order_they_read_them():
    # The thread's tick and a main-thread sample_now (warm-up, baseline) race: the tick
    # that read first must reach the sink and the batch list first, or the time series
    # has rows whose times step backwards.
    clock = FakeClock()
    first_in_sink = threading.Event()
    release_first = threading.Event()
    published = []

    def sink(phase, samples):
        if not published and not first_in_sink.is_set():
            first_in_sink.set()
            assert release_first.wait(5)
        published.append(samples[0].t_s)

    sampler = PowerSampler(two_gpus(clock), interval_ms=100, clock=clock, sink=sink)
    first = threading.Thread(target=sampler.sample_now)
    first.start()
    assert first_in_sink.wait(5)
    clock.advance(1.0)
    second = threading.Thread(target=sampler.sample_now)
    second.start()
    second.join(0.2)
    release_first.set()
    first.join(5)
    second.join(5)
    assert published == [0.0, 1.0]
    assert [b.t_s for b in sampler.batches()] == [0.0, 1.0]
