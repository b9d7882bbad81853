"""Energy of a time window, from the GPUs' total-energy counters.

Why the counter is the primary figure: NVML's power reading on recent GPUs is a ~1 s moving
average that the driver refreshes for only part of each period, so integrating sampled power
misses or smears short bursts. The total-energy counter (mJ, Volta and newer) accumulates
everything and updates about every 100 ms, so the energy of a window is the difference of two
readings; windows much shorter than ~1 s are still meaningless. Integrated sampled power is kept
as a cross-check (a disagreement over 5 % is a warning) and is the fallback for GPUs without a
counter, recorded as the method.

A counter that decreases inside a window (a driver reload or GPU reset) is an error, never
energy; a decrease that is a wrap of the counter's range is unwrapped.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.energy.device import GpuDevice
from harness.energy.sampler import PowerSampler, SampleBatch
from harness.errors import CounterWentBackwards, EnergyError
from harness.schema.result import Warning_

DISAGREEMENT_LIMIT = 0.05
"""Relative counter vs integrated-power difference above which a warning is raised."""

METHOD_COUNTER = "nvml_counter"
METHOD_INTEGRATION = "nvml_power_integration"

NO_SENSOR_MESSAGE = (
    "No NVIDIA GPU or NVML library was found, so energy is not measured: every energy field is "
    "null. llem never estimates energy it could not measure."
)


@dataclass(frozen=True)
class Mark:
    """The energy counters of every GPU at one instant.

    Attributes:
        t_s: when the counters were read (sampler clock, s).
        counters_j: each GPU's counter (J), in GPU order; None for a GPU without one.

    """

    t_s: float
    counters_j: tuple[float | None, ...]


@dataclass(frozen=True)
class EnergyReading:
    """Energy of the window between two marks; energy fields are None without a sensor.

    Attributes:
        duration_s: window length (s).
        energy_j: energy summed over GPUs (J).
        energy_per_gpu_j: energy of each GPU (J), counter delta or, without a counter,
            integrated power.
        energy_integrated_j: trapezoidal integral of sampled power summed over GPUs (J).
        energy_integrated_per_gpu_j: the same per GPU (J).
        method: ``nvml_counter``, or ``nvml_power_integration`` if any GPU has no counter.
        mean_power_w: energy_j / duration_s (W).
        samples: sampler ticks inside the window.
        samples_per_gpu: successful power reads of each GPU inside the window (a tick whose
            read of a GPU failed does not count for it).
        read_errors_per_gpu: failed sampler reads of each GPU inside the window.
        warnings: conditions the reader of these figures should know about.

    """

    duration_s: float
    energy_j: float | None
    energy_per_gpu_j: list[float] | None
    energy_integrated_j: float | None
    energy_integrated_per_gpu_j: list[float] | None
    method: str | None
    mean_power_w: float | None
    samples: int
    samples_per_gpu: list[int] = field(default_factory=list)
    read_errors_per_gpu: list[int] = field(default_factory=list)
    warnings: list[Warning_] = field(default_factory=list)


class _Curve:
    """A piecewise-linear curve through sorted points, held constant outside them."""

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        ordered = sorted(points, key=lambda point: point[0])
        self.times_s = [t for t, _ in ordered]
        self.values = [v for _, v in ordered]

    def __len__(self) -> int:
        return len(self.times_s)

    def at(self, t_s: float) -> float:
        """Value at ``t_s``, interpolated between the points around it."""
        i = bisect.bisect_right(self.times_s, t_s)
        if i == 0:
            return self.values[0]
        if i == len(self.times_s):
            return self.values[-1]
        t0, t1 = self.times_s[i - 1], self.times_s[i]
        v0, v1 = self.values[i - 1], self.values[i]
        return v0 + (v1 - v0) * (t_s - t0) / (t1 - t0)

    def integral(self, t0_s: float, t1_s: float) -> float:
        """Trapezoidal integral from ``t0_s`` to ``t1_s``, interpolating at both edges."""
        lo = bisect.bisect_right(self.times_s, t0_s)
        hi = bisect.bisect_left(self.times_s, t1_s)
        edges = [t0_s, *self.times_s[lo:hi], t1_s]
        return sum(
            (b - a) * (self.at(a) + self.at(b)) / 2 for a, b in zip(edges, edges[1:], strict=False)
        )


@dataclass(frozen=True)
class _CounterSeries:
    """One GPU's counter readings, unwrapped into energy since the first reading."""

    curve: _Curve
    backwards: list[tuple[float, float, float, float]]  # (t_a, c_a, t_b, c_b) of bad steps
    gpu_index: int

    def energy_j(self, t0_s: float, t1_s: float) -> float:
        for t_a, c_a, t_b, c_b in self.backwards:
            if t_a < t1_s and t_b > t0_s:
                raise CounterWentBackwards(
                    f"GPU {self.gpu_index}'s energy counter went backwards from {c_a:.3f} J "
                    f"(t={t_a:.3f} s) to {c_b:.3f} J (t={t_b:.3f} s): the driver was reloaded "
                    "or the GPU reset, so this window's energy is unknown.",
                    fix="Keep the driver loaded during runs (persistence mode on) and rerun.",
                )
        return self.curve.at(t1_s) - self.curve.at(t0_s)


def _forward_step_j(before_j: float, after_j: float, wrap_j: float | None) -> float | None:
    """Energy between two counter readings, or None when the counter went backwards.

    A decrease is a wrap only if unwrapping it gives a step shorter than half the counter's
    range (serial-number arithmetic); a reset to near zero unwraps to nearly the whole range.
    """
    step = after_j - before_j
    if step >= 0:
        return step
    if wrap_j is not None and step + wrap_j < wrap_j / 2:
        return step + wrap_j
    return None


def _counter_series(
    points: Sequence[tuple[float, float]], gpu: GpuDevice
) -> _CounterSeries:
    ordered = sorted(points, key=lambda point: point[0])
    cumulative: list[tuple[float, float]] = [(ordered[0][0], 0.0)]
    backwards: list[tuple[float, float, float, float]] = []
    total_j = 0.0
    for (t_a, c_a), (t_b, c_b) in zip(ordered, ordered[1:], strict=False):
        step = _forward_step_j(c_a, c_b, gpu.counter_wrap_j)
        if step is None:
            backwards.append((t_a, c_a, t_b, c_b))
        else:
            total_j += step
        cumulative.append((t_b, total_j))
    return _CounterSeries(_Curve(cumulative), backwards, gpu.index)


@dataclass(frozen=True)
class _GpuHistory:
    """Everything read from one GPU so far, ordered by time."""

    power: _Curve
    counter_points: list[tuple[float, float]]
    counter: _CounterSeries | None

    def counter_points_inside(self, t0_s: float, t1_s: float) -> list[tuple[float, float]]:
        times = [t for t, _ in self.counter_points]
        lo, hi = bisect.bisect_right(times, t0_s), bisect.bisect_left(times, t1_s)
        return self.counter_points[lo:hi]

    def integrated_j(self, t0_s: float, t1_s: float) -> float | None:
        return self.power.integral(t0_s, t1_s) if len(self.power) else None


def _histories(
    gpus: Sequence[GpuDevice], batches: list[SampleBatch], marks: list[Mark]
) -> list[_GpuHistory]:
    position_of = {gpu.index: position for position, gpu in enumerate(gpus)}
    power: list[list[tuple[float, float]]] = [[] for _ in gpus]
    counters: list[list[tuple[float, float]]] = [[] for _ in gpus]
    for sample in (sample for batch in batches for sample in batch.samples):
        position = position_of.get(sample.gpu_index)
        if position is None:
            continue
        if sample.power_w is not None:
            power[position].append((sample.t_s, sample.power_w))
        if sample.energy_counter_j is not None:
            counters[position].append((sample.t_s, sample.energy_counter_j))
    for mark in marks:
        for position, counter_j in enumerate(mark.counters_j):
            if counter_j is not None:
                counters[position].append((mark.t_s, counter_j))
    histories = []
    for gpu, power_points, counter_points in zip(gpus, power, counters, strict=True):
        counter_points.sort(key=lambda point: point[0])
        series = _counter_series(counter_points, gpu) if counter_points else None
        histories.append(_GpuHistory(_Curve(power_points), counter_points, series))
    return histories


class EnergyMeter:
    """Read energy between marks from the GPUs' counters, cross-checked with sampled power.

    Args:
        gpus: the GPUs measured; empty on a machine without NVIDIA GPUs.
        sampler: the running power sampler; its clock is the meter's clock.

    """

    def __init__(self, gpus: Sequence[GpuDevice], sampler: PowerSampler) -> None:
        self.gpus = gpus
        self.sampler = sampler
        self._marks: list[Mark] = []
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int], list[_GpuHistory]] | None = None

    def mark(self) -> Mark:
        """Read every GPU's counter and the clock (the midpoint of the reads) now."""
        clock = self.sampler.clock
        with self.sampler.read_lock:  # orders the mark among the sampler's own reads
            before_s = clock()
            counters = tuple(gpu.energy_counter_j() for gpu in self.gpus)
            after_s = clock()
        mark = Mark(t_s=(before_s + after_s) / 2, counters_j=counters)
        with self._lock:
            self._marks.append(mark)
        return mark

    def between(self, start: Mark, end: Mark) -> EnergyReading:
        """Energy of the window from ``start`` to ``end``.

        Raises:
            CounterWentBackwards: a GPU's counter decreased inside the window (not a wrap).
            ValueError: ``end`` is before ``start``.

        """
        duration_s = end.t_s - start.t_s
        if duration_s < 0:
            raise ValueError(f"end mark ({end.t_s} s) is before start mark ({start.t_s} s)")
        inside = [b for b in self.sampler.batches() if start.t_s <= b.t_s <= end.t_s]
        samples = len(inside)
        if len(self.gpus) == 0:
            return _no_sensor_reading(duration_s, samples)
        histories = self._histories()
        integrated = [h.integrated_j(start.t_s, end.t_s) for h in histories]
        counted = [
            self._counter_delta_j(position, history, start, end)
            for position, history in enumerate(histories)
        ]
        reading = _reading(self.gpus, duration_s, counted, integrated, samples)
        reading.samples_per_gpu.extend(_reads_per_gpu(self.gpus, inside))
        reading.read_errors_per_gpu.extend(self._errors_per_gpu(start.t_s, end.t_s))
        return reading

    def _errors_per_gpu(self, t0_s: float, t1_s: float) -> list[int]:
        return [sum(t0_s <= t <= t1_s for t in self.sampler.error_times_s(gpu.index))
                for gpu in self.gpus]

    def energy_at_times(self, t0_s: float, t1_s: float) -> float:
        """Energy summed over GPUs between two arbitrary instants (J).

        The counter is interpolated linearly between its readings (sampler ticks and marks);
        since it only updates every ~100 ms, a span much shorter than that is approximate.
        GPUs without a counter use integrated sampled power. Instants outside the readings
        take the nearest reading.

        Raises:
            EnergyError: there is no GPU, or no reading of one, to measure with.
            CounterWentBackwards: a counter decreased inside the span.
            ValueError: ``t1_s`` is before ``t0_s``.

        """
        if t1_s < t0_s:
            raise ValueError(f"t1_s ({t1_s}) is before t0_s ({t0_s})")
        if len(self.gpus) == 0:
            raise EnergyError("energy_at_times needs a GPU. " + NO_SENSOR_MESSAGE)
        total_j = 0.0
        for gpu, history in zip(self.gpus, self._histories(), strict=True):
            energy_j = (
                history.counter.energy_j(t0_s, t1_s)
                if history.counter is not None
                else history.integrated_j(t0_s, t1_s)
            )
            if energy_j is None:
                raise EnergyError(f"GPU {gpu.index} has no energy or power readings")
            total_j += energy_j
        return total_j

    def _histories(self) -> list[_GpuHistory]:
        """Per-GPU readings, rebuilt only when a tick or a mark was added since last time."""
        batches = self.sampler.batches()
        with self._lock:
            marks = list(self._marks)
        key = (len(batches), len(marks))  # both lists only ever grow
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, _histories(self.gpus, batches, marks))
        return self._cache[1]

    def _counter_delta_j(
        self, position: int, history: _GpuHistory, start: Mark, end: Mark
    ) -> float | None:
        first, last = start.counters_j[position], end.counters_j[position]
        if first is None or last is None:
            return None
        inside = history.counter_points_inside(start.t_s, end.t_s)
        points = [(start.t_s, first), *inside, (end.t_s, last)]
        return _counter_series(points, self.gpus[position]).energy_j(start.t_s, end.t_s)


def _reads_per_gpu(gpus: Sequence[GpuDevice], batches: list[SampleBatch]) -> list[int]:
    """Successful power reads per GPU: a tick whose read of a GPU failed lacks that GPU."""
    read = [s.gpu_index for b in batches for s in b.samples if s.power_w is not None]
    return [read.count(gpu.index) for gpu in gpus]


def _no_sensor_reading(duration_s: float, samples: int) -> EnergyReading:
    return EnergyReading(
        duration_s=duration_s,
        energy_j=None,
        energy_per_gpu_j=None,
        energy_integrated_j=None,
        energy_integrated_per_gpu_j=None,
        method=None,
        mean_power_w=None,
        samples=samples,
    )  # why there is no sensor is the caller's to say (no GPU, or energy.backend none)


def _reading(
    gpus: Sequence[GpuDevice],
    duration_s: float,
    counted: list[float | None],
    integrated: list[float | None],
    samples: int,
) -> EnergyReading:
    per_gpu = [c if c is not None else i for c, i in zip(counted, integrated, strict=True)]
    warnings = _disagreement_warnings(gpus, counted, integrated)
    energy_per_gpu_j = _all_or_none(per_gpu)
    if energy_per_gpu_j is None:
        missing = [gpu.index for gpu, e in zip(gpus, per_gpu, strict=True) if e is None]
        warnings.append(Warning_(
            code="gpu_unreadable",
            message=f"GPU(s) {missing} have neither an energy counter nor power samples in "
            "this window, so energy is not measured: energy fields are null.",
        ))
    energy_integrated_per_gpu_j = _all_or_none(integrated)
    energy_j = None if energy_per_gpu_j is None else sum(energy_per_gpu_j)
    return EnergyReading(
        duration_s=duration_s,
        energy_j=energy_j,
        energy_per_gpu_j=energy_per_gpu_j,
        energy_integrated_j=_sum_or_none(energy_integrated_per_gpu_j),
        energy_integrated_per_gpu_j=energy_integrated_per_gpu_j,
        method=None if energy_j is None else _method(counted, getattr(gpus, "source", "nvml")),
        mean_power_w=energy_j / duration_s if energy_j is not None and duration_s > 0 else None,
        samples=samples,
        warnings=warnings,
    )


def _disagreement_warnings(
    gpus: Sequence[GpuDevice], counted: list[float | None], integrated: list[float | None]
) -> list[Warning_]:
    warnings = []
    for gpu, counter_j, integrated_j in zip(gpus, counted, integrated, strict=True):
        if counter_j is None or integrated_j is None or counter_j <= 0:
            continue
        relative = abs(integrated_j - counter_j) / counter_j
        if relative > DISAGREEMENT_LIMIT:
            warnings.append(Warning_(
                code="energy_disagreement",
                message=f"GPU {gpu.index}: the energy counter gives {counter_j:.3f} J but "
                f"integrated sampled power gives {integrated_j:.3f} J ({relative:.1%} apart, "
                f"over {DISAGREEMENT_LIMIT:.0%}). The counter is reported; sampled power is a "
                "~1 s average read only part of the time, so short or bursty windows differ.",
            ))
    return warnings


def _method(counted: list[float | None], source: str) -> str:
    method = METHOD_COUNTER if all(c is not None for c in counted) else METHOD_INTEGRATION
    return method.replace("nvml", source, 1)


def _all_or_none(values: list[float | None]) -> list[float] | None:
    present = [v for v in values if v is not None]
    return present if len(present) == len(values) else None


def _sum_or_none(values: list[float] | None) -> float | None:
    return None if values is None else sum(values)
