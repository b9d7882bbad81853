"""Static prefill/decode batches as a power trace whose phase energies are known exactly.

The trace is read through a FakeGpu counter that (like NVML) moves only every 100 ms, and a
PowerSampler that ticks every ``interval_s`` as the fake clock advances.
"""

from __future__ import annotations

from harness.backends.base import GenerationOutput, PhaseMark, Request, RequestOutput
from harness.energy import EnergyMeter, GpuSet, PowerSampler
from harness.energy.meter import EnergyReading
from harness.testing import FakeClock, FakeGpu, Point

PREFILL_W, DECODE_W, IDLE_W = 600.0, 300.0, 80.0
"""Power of the trace (W) during prefill, during decode and before the first batch."""


class StaticBatches:
    """Idle until ``start_s``, then ``batches`` static batches (prefill then decode), then
    prefill power for ``tail_s`` (what a prefill pass after the window draws)."""

    def __init__(self, prefill_s: float, decode_s: float, batches: int, interval_s: float,
                 start_s: float = 0.5, step_s: float = 0.01, tail_s: float = 10_000.0,
                 update_phase_s: float = 0.0) -> None:
        self.clock = FakeClock()
        self.interval_s, self.step_s, self.start_s = interval_s, step_s, start_s
        points: list[Point] = [(0.0, IDLE_W), (start_s, IDLE_W)]
        self.marks: list[PhaseMark] = []
        t = start_s
        for _ in range(batches):
            points += [(t + 1e-6, PREFILL_W), (t + prefill_s, PREFILL_W),
                       (t + prefill_s + 1e-6, DECODE_W), (t + prefill_s + decode_s, DECODE_W)]
            self.marks.append(PhaseMark(t, t + prefill_s, t + prefill_s + decode_s))
            t += prefill_s + decode_s
        self.end_s = t
        points += [(t + 1e-6, PREFILL_W), (t + tail_s, PREFILL_W)]
        self.gpu = FakeGpu(points, clock=self.clock, counter_update_period_s=0.1,
                           counter_update_phase_s=update_phase_s)
        gpus = GpuSet([self.gpu])
        self.sampler = PowerSampler(gpus, round(interval_s * 1000), clock=self.clock)
        self.meter = EnergyMeter(gpus, self.sampler)

    def advance_to(self, t_s: float) -> None:
        """Let time pass in steps of ``step_s``, the sampler ticking every ``interval_s``."""
        while self.clock() < t_s - 1e-9:
            before = self.clock()
            self.clock.advance(min(self.step_s, t_s - before))
            if int(self.clock() / self.interval_s + 1e-9) > int(before / self.interval_s + 1e-9):
                self.sampler.sample_now()

    def window(self) -> tuple[EnergyReading, GenerationOutput]:
        """Measure the batches' window; return its reading and the batches' output."""
        self.advance_to(self.start_s)
        start = self.meter.mark()
        self.advance_to(self.end_s)
        reading = self.meter.between(start, self.meter.mark())
        outputs = [RequestOutput(i, 8, 4, m.start_s, m.end_s) for i, m in enumerate(self.marks)]
        return reading, GenerationOutput(outputs, self.marks, phases_separated=True)

    def true_j(self, phase: str) -> float:
        """The exact energy (J) of every batch's ``"prefill"`` or (otherwise) decode."""
        if phase == "prefill":
            return sum(self.gpu.true_energy_j(m.start_s, m.prefill_end_s) for m in self.marks)
        return sum(self.gpu.true_energy_j(m.prefill_end_s, m.end_s) for m in self.marks)


class PassBackend:
    """A backend whose every ``generate`` lets ``seconds`` of the trace pass (a prefill pass)."""

    def __init__(self, run: StaticBatches, seconds: float) -> None:
        self.run, self.seconds = run, seconds
        self.calls: list[list[Request]] = []

    def synchronize(self) -> None:
        pass

    def generate(self, requests: list[Request], on_batch: object = None) -> GenerationOutput:
        """Record the call, advance the trace's clock by ``seconds`` and return no outputs."""
        self.calls.append(requests)
        self.run.advance_to(self.run.clock() + self.seconds)
        return GenerationOutput([])
