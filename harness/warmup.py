"""Warmup: bring the device to the state the measurement should see.

Passes. The first pass runs the backend's whole warmup set once: for PyTorch with
torch.compile that is one static batch of every distinct batch shape of the window, so nothing
compiles inside it. Every later pass repeats the set's first batch (learned from the backend's
per-batch callback), which has the measurement's full shape. Warmup runs at least ``n_warmup``
batches (the first pass's included) and at least ``min_seconds``; no pass starts after
``max_seconds``, and the first pass always runs in full.

Steady state (``until_stable``). NVML reports temperature in whole degrees, so a slope fitted
over a short window sees a slow rise as long runs of one integer value and calls it flat. The
rule, for every GPU:

* window: the last ``STABLE_WINDOW_S`` (120 s) of warmup samples;
* temperature: least-squares slope over the window within ``STABLE_SLOPE_C_PER_MIN`` (0.5
  degC/min), i.e. at most 1 degC of fitted change across the window, so a real rise at that
  rate moves the integer reading at least once inside it;
* power: least-squares slope of the mean power of each whole batch in the window (trapezoidal
  integral of sampled power over the batch / its duration) within ``STABLE_POWER_PCT_PER_MIN``
  (2 % of the batches' mean per minute). Whole batches, because a batch's own prefill/decode
  pattern tilts a line fitted through raw samples. Judged when the window holds at least
  ``MIN_POWER_BATCHES`` (4) whole repeated batches and the GPU reports power; otherwise power
  is not judged (its slope is null) and the rule rests on temperature;
* consecutive checks: the rule holds for the windows ending now and ``STABLE_CHECK_SPACING_S``
  (10 s), 20 s and 30 s earlier (``STABLE_CHECKS`` = 4), each lying wholly inside warmup, so
  no verdict comes before 150 s of warmup.

For a first-order warm-up (time constant tau) whose readings are whole degrees, the slope bound
leaves at most about 0.4 x tau (minutes) degC still to rise; see docs/methodology.md for the
simulated figures. The record keeps the final slopes per GPU, over the last window (or the
whole warmup when shorter), whether or not stability was asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from harness.backends.base import Backend, Request
from harness.energy import PowerSampler
from harness.energy.device import GpuSample
from harness.schema.config import WarmupConfig
from harness.schema.result import WarmupRecord

STABLE_WINDOW_S = 120.0
STABLE_SLOPE_C_PER_MIN = 0.5
STABLE_POWER_PCT_PER_MIN = 2.0
STABLE_CHECKS = 4
STABLE_CHECK_SPACING_S = 10.0
STABLE_HISTORY_S = STABLE_WINDOW_S + (STABLE_CHECKS - 1) * STABLE_CHECK_SPACING_S
"""How far back the checks look (s): the earliest window's start."""
STABLE_EVALUATE_EVERY_S = 2.0
"""Judge stability at most this often: a judgement reads every recent sample, and tiny
batches would otherwise spend warmup time on it instead of keeping the device loaded."""
MIN_POINTS = 5
MIN_POWER_BATCHES = 4

BatchEdges = Sequence[tuple[float, float]]
"""(start_s, end_s) of each repeated warmup batch, on the sampler's clock."""


@dataclass(frozen=True)
class Trend:
    """How one GPU moved over one window.

    Attributes:
        temperature_slope_c_per_min: least-squares temperature slope (degC/min); None with
            fewer than MIN_POINTS readings or readings that do not reach the window's ends.
        power_slope_pct_per_min: least-squares slope of per-batch mean power, as % of their
            mean per minute; None with fewer than MIN_POWER_BATCHES whole batches.
    """

    temperature_slope_c_per_min: float | None
    power_slope_pct_per_min: float | None

    def meets_rule(self) -> bool:
        """True when temperature is flat enough and power, where judged, too."""
        slope_c = self.temperature_slope_c_per_min
        if slope_c is None or abs(slope_c) > STABLE_SLOPE_C_PER_MIN:
            return False
        power = self.power_slope_pct_per_min
        return power is None or abs(power) <= STABLE_POWER_PCT_PER_MIN


Readings = tuple[np.ndarray, np.ndarray]
"""One GPU's (times_s, values) of one quantity, sorted by time."""


def _readings(samples: Sequence[GpuSample], gpu_index: int, attribute: str) -> Readings:
    points = sorted((s.t_s, value) for s in samples if s.gpu_index == gpu_index
                    and (value := getattr(s, attribute)) is not None)
    if not points:
        return np.empty(0), np.empty(0)
    times_s, values = np.asarray(points, dtype=float).T
    return times_s, values


def _inside(readings: Readings, start_s: float, end_s: float) -> Readings:
    times_s, values = readings
    first = int(np.searchsorted(times_s, start_s, side="left"))
    last = int(np.searchsorted(times_s, end_s, side="right"))
    return times_s[first:last], values[first:last]


def _slope_per_min(times_s: np.ndarray, values: np.ndarray) -> float | None:
    if times_s.size < 2 or times_s[-1] - times_s[0] <= 0:
        return None
    return float(np.polyfit(times_s - times_s[0], values, 1)[0] * 60.0)


def _covers(times_s: np.ndarray, start_s: float, end_s: float) -> bool:
    """Readings reach both ends of the window (within a tenth of it, plus a second)."""
    slack_s = 0.1 * (end_s - start_s) + 1.0
    return bool(times_s.size >= MIN_POINTS and times_s[0] - start_s <= slack_s
                and end_s - times_s[-1] <= slack_s)


def _temperature_slope(temperatures: Readings, start_s: float, end_s: float) -> float | None:
    times_s, temperatures_c = _inside(temperatures, start_s, end_s)
    if not _covers(times_s, start_s, end_s):
        return None
    return _slope_per_min(times_s, temperatures_c)


def _integral_at(times_s: np.ndarray, values: np.ndarray, at_s: np.ndarray) -> np.ndarray:
    """Integral of the interpolated readings from the first one to each ``at_s``.

    Readings are joined linearly and held constant beyond both ends.
    """
    steps = np.diff(times_s) * (values[1:] + values[:-1]) / 2
    cumulative = np.concatenate(([0.0], np.cumsum(steps)))
    i = np.clip(np.searchsorted(times_s, at_s, side="right") - 1, 0, times_s.size - 1)
    last_step = (at_s - times_s[i]) * (values[i] + np.interp(at_s, times_s, values)) / 2
    integral: np.ndarray = cumulative[i] + last_step
    return integral


def _power_slope(power: Readings, edges: BatchEdges, start_s: float,
                 end_s: float) -> float | None:
    whole = np.asarray([(a, b) for a, b in edges if start_s <= a < b <= end_s], dtype=float)
    times_s, power_w = _inside(power, start_s, end_s)
    if len(whole) < MIN_POWER_BATCHES or times_s.size < 2:
        return None
    starts_s, ends_s = whole.T
    energy = _integral_at(times_s, power_w, ends_s) - _integral_at(times_s, power_w, starts_s)
    means_w = energy / (ends_s - starts_s)
    slope_w_per_min = _slope_per_min((starts_s + ends_s) / 2, means_w)
    if slope_w_per_min is None or means_w.mean() <= 0:
        return None
    return 100.0 * slope_w_per_min / float(means_w.mean())


def _trend(temperatures: Readings, power: Readings, edges: BatchEdges,
           start_s: float, end_s: float) -> Trend:
    return Trend(
        temperature_slope_c_per_min=_temperature_slope(temperatures, start_s, end_s),
        power_slope_pct_per_min=_power_slope(power, edges, start_s, end_s),
    )


def trend(samples: Sequence[GpuSample], edges: BatchEdges, gpu_index: int,
          start_s: float, end_s: float) -> Trend:
    """Temperature and per-batch power slopes of one GPU over [start_s, end_s] (sampler s)."""
    return _trend(_readings(samples, gpu_index, "temperature_c"),
                  _readings(samples, gpu_index, "power_w"), edges, start_s, end_s)


def is_stable(samples: Sequence[GpuSample], edges: BatchEdges, gpu_indices: Sequence[int],
              now_s: float, since_s: float) -> bool:
    """True when every GPU meets the rule in each of the consecutive check windows.

    The STABLE_CHECKS windows end at ``now_s`` and STABLE_CHECK_SPACING_S apart before it,
    and must all start at or after ``since_s`` (the start of warmup).
    """
    ends_s = [now_s - k * STABLE_CHECK_SPACING_S for k in range(STABLE_CHECKS)]
    if min(ends_s) - STABLE_WINDOW_S < since_s - 1e-9:
        return False  # not enough warmup history to judge
    for index in gpu_indices:
        temperatures = _readings(samples, index, "temperature_c")
        power = _readings(samples, index, "power_w")
        if not all(_trend(temperatures, power, edges, end_s - STABLE_WINDOW_S, end_s).meets_rule()
                   for end_s in ends_s):
            return False
    return True


def _temperatures(sampler: PowerSampler, gpu_indices: Sequence[int]) -> list[float | None] | None:
    if not gpu_indices:
        return None
    latest = sampler.sample_now().samples
    by_index = {s.gpu_index: s.temperature_c for s in latest}
    return [by_index.get(index) for index in gpu_indices]


@dataclass
class _Progress:
    """What warmup has done so far (times on the warmup clock, s)."""

    start_s: float
    batches: int = 0
    passes: int = 0
    edges: list[tuple[float, float]] = field(default_factory=list)
    last_judged_s: float | None = None


def _run_pass(backend: Backend, requests: list[Request],
              clock: Callable[[], float]) -> tuple[list[tuple[float, float]], int | None]:
    """Generate ``requests`` once; return each batch's (start, end) and the first's rows."""
    ends: list[tuple[float, int]] = []
    start_s = clock()
    backend.generate(requests, on_batch=lambda done, total: ends.append((clock(), done)))
    if not ends:  # a backend that reports no batches ran the whole set as one
        return [(start_s, clock())], None
    starts_s = [start_s, *(end_s for end_s, _ in ends[:-1])]
    return [(a, b) for a, (b, _) in zip(starts_s, ends, strict=True)], ends[0][1]


class _Warmup:
    """The warmup loop of one run; see the module docstring for the rules."""

    def __init__(self, backend: Backend, config: WarmupConfig, sampler: PowerSampler,
                 gpu_indices: Sequence[int], clock: Callable[[], float]) -> None:
        self.backend, self.config, self.sampler = backend, config, sampler
        self.gpu_indices, self.clock = list(gpu_indices), clock
        self.progress = _Progress(start_s=clock())

    def elapsed_s(self) -> float:
        return self.clock() - self.progress.start_s

    def enough(self) -> bool:
        """Count and minimum time both reached."""
        return (self.progress.batches >= self.config.n_warmup
                and self.elapsed_s() >= self.config.min_seconds)

    def steady(self) -> bool:
        """Judge stability, at most every STABLE_EVALUATE_EVERY_S."""
        now_s, last_s = self.clock(), self.progress.last_judged_s
        if last_s is not None and now_s - last_s < STABLE_EVALUATE_EVERY_S:
            return False
        self.progress.last_judged_s = now_s
        since_s = self.progress.start_s
        samples = self.sampler.samples_between(max(since_s, now_s - STABLE_HISTORY_S), now_s)
        return is_stable(samples, self.progress.edges, self.gpu_indices, now_s, since_s)

    def run_pass(self, requests: list[Request]) -> list[Request]:
        """Run one pass; return what the next pass runs (the first batch of the set)."""
        edges, first_rows = _run_pass(self.backend, requests, self.clock)
        self.progress.batches += len(edges)
        self.progress.passes += 1
        if self.progress.passes > 1:  # the first pass mixes shapes: not one repeated batch
            self.progress.edges.extend(edges)
        return requests if first_rows is None else requests[:first_rows]

    def final_trends(self) -> tuple[list[Trend], float]:
        """Each GPU's trend over the last window (or all of warmup when shorter)."""
        end_s = self.clock()
        start_s = max(self.progress.start_s, end_s - STABLE_WINDOW_S)
        samples = self.sampler.samples_between(start_s, end_s)
        trends = [trend(samples, self.progress.edges, i, start_s, end_s)
                  for i in self.gpu_indices]
        return trends, end_s - start_s


def run_warmup(
    backend: Backend,
    warmup_set: list[Request],
    config: WarmupConfig,
    sampler: PowerSampler,
    gpu_indices: Sequence[int],
    on_batch: Callable[[int, float], None],
    clock: Callable[[], float] = time.perf_counter,
) -> WarmupRecord:
    """Run warmup passes until the configured conditions hold; return what was done.

    Args:
        backend: the loaded backend.
        warmup_set: requests of the first pass (every batch shape of the window); later
            passes repeat its first batch.
        config: counts, times and whether to wait for steady state.
        sampler: the running sampler; ``clock`` must be its clock.
        gpu_indices: GPUs to judge; none means stability cannot be assessed.
        on_batch: called after each pass with (batches so far, seconds since start).
        clock: seconds.
    """
    temperature_start = _temperatures(sampler, gpu_indices)
    loop = _Warmup(backend, config, sampler, gpu_indices, clock)
    stable = _loop(loop, warmup_set, on_batch)
    backend.synchronize()
    record = WarmupRecord(
        batches=loop.progress.batches,
        duration_s=loop.elapsed_s(),
        temperature_start_c=temperature_start,
        temperature_end_c=_temperatures(sampler, gpu_indices),
        stable=stable,
    )
    if gpu_indices:
        trends, record.stability_window_s = loop.final_trends()
        record.temperature_slope_c_per_min = [t.temperature_slope_c_per_min for t in trends]
        record.power_slope_pct_per_min = [t.power_slope_pct_per_min for t in trends]
    return record


def _loop(loop: _Warmup, warmup_set: list[Request],
          on_batch: Callable[[int, float], None]) -> bool | None:
    """Run passes; return True (steady), False (max_seconds first) or None (not assessed)."""
    config, requests = loop.config, warmup_set
    judged = config.until_stable and bool(loop.gpu_indices)
    while loop.elapsed_s() < config.max_seconds:
        if loop.enough():
            if not judged:
                return None  # not asked, or nothing to read a temperature from
            if loop.steady():
                return True
        requests = loop.run_pass(requests)
        on_batch(loop.progress.batches, loop.elapsed_s())
    return False if judged else None


def final_slopes(record: WarmupRecord, gpu_indices: Sequence[int]) -> str:
    """The record's final slopes for a message: ``GPU 0: 0.80 degC/min, power 0.40 %/min``."""
    temperature = record.temperature_slope_c_per_min or [None] * len(gpu_indices)
    power = record.power_slope_pct_per_min or [None] * len(gpu_indices)
    return "; ".join(
        f"GPU {index}: {_number(slope_c)} degC/min, power {_number(slope_pct)} %/min"
        for index, slope_c, slope_pct in zip(gpu_indices, temperature, power, strict=True)
    )


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
