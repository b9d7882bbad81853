"""Phase split edge cases: a coarse sampler, a pass too short for the counter, no decode.

Every scenario plays a power trace whose phase energies are known exactly, read through a
counter that (like NVML) moves only every 100 ms.
"""

from __future__ import annotations

import pytest

from harness import phases
from harness.backends.base import GenerationOutput, PhaseMark, Request, RequestOutput
from harness.energy import EnergyMeter, GpuSet, PowerSampler
from harness.testing import FakeClock, FakeGpu

PREFILL_W, DECODE_W, IDLE_W = 600.0, 300.0, 80.0
STEP_S = 0.01


class Static:
    """Static batches (prefill then decode, phases separated), sampled every ``interval_s``."""

    def __init__(self, prefill_s: float, decode_s: float, batches: int, interval_s: float,
                 start_s: float = 0.5) -> None:
        self.clock = FakeClock()
        self.interval_s = interval_s
        points, t = [(0.0, IDLE_W), (start_s, IDLE_W)], start_s
        self.start_s = start_s
        self.marks: list[PhaseMark] = []
        for _ in range(batches):
            points += [(t + 1e-6, PREFILL_W), (t + prefill_s, PREFILL_W),
                       (t + prefill_s + 1e-6, DECODE_W), (t + prefill_s + decode_s, DECODE_W)]
            self.marks.append(PhaseMark(t, t + prefill_s, t + prefill_s + decode_s))
            t += prefill_s + decode_s
        self.end_s = t
        points += [(t + 1e-6, PREFILL_W), (t + 10_000.0, PREFILL_W)]
        self.gpu = FakeGpu(points, clock=self.clock, counter_update_period_s=0.1)
        gpus = GpuSet([self.gpu])
        self.sampler = PowerSampler(gpus, int(interval_s * 1000), clock=self.clock)
        self.meter = EnergyMeter(gpus, self.sampler)

    def advance_to(self, t_s: float) -> None:
        while self.clock() < t_s - 1e-9:
            before = self.clock()
            self.clock.advance(min(STEP_S, t_s - before))
            if int(self.clock() / self.interval_s + 1e-9) > int(before / self.interval_s + 1e-9):
                self.sampler.sample_now()

    def window(self):
        self.advance_to(self.start_s)
        start = self.meter.mark()
        self.advance_to(self.end_s)
        reading = self.meter.between(start, self.meter.mark())
        outputs = [RequestOutput(i, 8, 4, m.start_s, m.end_s) for i, m in enumerate(self.marks)]
        return reading, GenerationOutput(outputs, self.marks, phases_separated=True)

    def true_j(self, phase: str) -> float:
        if phase == "prefill":
            return sum(self.gpu.true_energy_j(m.start_s, m.prefill_end_s) for m in self.marks)
        return sum(self.gpu.true_energy_j(m.prefill_end_s, m.end_s) for m in self.marks)


@pytest.mark.parametrize("interval_ms", [1000, 3000])
def test_window_edges_are_refused_when_the_sampler_reads_the_counter_too_coarsely(interval_ms):
    """The counter is read inside the window only at sampler ticks, and the split interpolates
    between reads: each edge between two ticks smears the phases over the tick interval. 6
    static batches of 5 s prefill at 600 W and 5 s decode at 300 W: cut at 1 s sampling, the
    prefill comes out -4.6 % and decode +9.2 %; at 3 s, -9.9 % / +19.7 %. Every interval lasts
    5 s, so a rule that looked only at the counter's 100 ms update period accepted them."""
    run = Static(prefill_s=5.0, decode_s=5.0, batches=6, interval_s=interval_ms / 1000)
    reading, output = run.window()
    assert reading.warnings == []  # nothing else would have said so
    split = phases.split_by_edges(run.meter, output.phase_marks)
    assert split.prefill.energy_j / run.true_j("prefill") - 1 < -0.04
    reason = phases.edges_problem(output, resolution_s=interval_ms / 1000)
    assert reason is not None and "resolution of the counter readings" in reason


def test_window_edges_at_the_default_sampler_get_5_s_phases_within_3_percent():
    run = Static(prefill_s=5.0, decode_s=5.0, batches=6, interval_s=0.1)
    _, output = run.window()
    assert phases.edges_problem(output, resolution_s=0.1) is None
    split = phases.split_by_edges(run.meter, output.phase_marks)
    assert split.prefill.energy_j == pytest.approx(run.true_j("prefill"), rel=0.03)
    assert split.decode.energy_j == pytest.approx(run.true_j("decode"), rel=0.03)


def test_a_prefill_pass_lasts_at_least_50_counter_updates_whatever_the_setting():
    """``energy.prefill_pass_min_s: 0`` once let a single 60 ms pass be cut by the 100 ms
    counter: it did not move, and prefill was published as 0 J (true 36 J). The pass now
    repeats until it spans 50 counter updates."""
    run = Static(prefill_s=0.06, decode_s=1.0, batches=10, interval_s=0.1)
    reading, _ = run.window()
    window_j = reading.energy_j

    class PrefillOnce:
        def synchronize(self) -> None:
            pass

        def generate(self, requests, on_batch=None):
            # one 60 ms prefill of the whole workload (600 W in the trace after the window)
            run.advance_to(run.clock() + 0.06)
            return GenerationOutput([])

    requests = [Request(i, [5, 6, 7, 8], 4) for i in range(10)]
    run.advance_to(run.end_s + 0.03)
    split = phases.run_prefill_pass(PrefillOnce(), requests, run.meter, window_j,
                                    window_s=run.end_s - run.start_s, min_s=0.0,
                                    clock=run.clock, update_period_s=0.1)
    true_pass_j = PREFILL_W * 0.06
    assert split.prefill.energy_j == pytest.approx(true_pass_j, rel=0.03)
    assert split.prefill_pass is not None and split.prefill_pass.duration_s >= 5.0


def test_decode_by_difference_is_null_when_there_is_no_decode():
    """``output_len: 1`` (a prefill-only workload) has no decode at all. Window minus pass came
    out at -26 J (the counter's lag at the four edges) and was published; true: 0 J."""
    run = Static(prefill_s=10.0, decode_s=1e-3, batches=1, interval_s=0.1, start_s=0.55)
    reading, _ = run.window()
    window_j = reading.energy_j

    class SamePrefill:
        def synchronize(self) -> None:
            pass

        def generate(self, requests, on_batch=None):
            run.advance_to(run.clock() + 10.0)  # the same 10 s of prefill at 600 W
            return GenerationOutput([])

    requests = [Request(i, [5, 6, 7, 8], 1) for i in range(8)]
    split = phases.run_prefill_pass(SamePrefill(), requests, run.meter, window_j,
                                    window_s=run.end_s - run.start_s, min_s=10.0,
                                    clock=run.clock)
    assert split.decode.duration_s >= 0.0
    assert split.decode.energy_j is None
    assert split.decode_null_reason is not None and "no decode" in split.decode_null_reason


def test_decode_within_the_counters_resolution_is_null_not_noise():
    """Requests that do ask for decode, but so little that window minus prefill is within
    the lag of the four counter readings: null with the reason, never a negative figure."""
    requests = [Request(0, [5, 6], 2)]
    decode_j, reason = phases._decode_by_difference(
        requests, window=(600.0, 1.0), pass_=(6000.0, 10.0), repeats=10, update_period_s=0.1)
    # window 600 J, prefill 600 J per repeat: decode 0 J, resolution 2 x 0.1 x (600 + 60) J
    assert decode_j is None and reason is not None and "132.000 J" in reason
