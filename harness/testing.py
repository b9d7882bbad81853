"""Replay scripted GPU power traces through the same interface as the NVML device.

:class:`FakeGpu` plays a piecewise-linear power trace and answers every :class:`GpuDevice`
call from it; its energy counter is the exact integral of that trace, so a test (or a user
checking an analysis) knows the true energy of any window. :class:`FakeClock` is a clock that
moves only when told to, which makes timing deterministic and instant.

This module ships in the package and never imports pytest.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.energy.device import GpuDevice, GpuSample
from harness.schema.result import GpuInfo

Point = tuple[float, float]
"""A breakpoint of a trace: (seconds since the trace started, value)."""


class FakeClock:
    """A clock that advances only when told to; call it to read the time (s).

    Args:
        start_s: the time it reads before the first advance.

    """

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = start_s
        self._lock = threading.Lock()

    def __call__(self) -> float:
        """Read the time (s)."""
        with self._lock:
            return self._now_s

    def advance(self, dt_s: float) -> float:
        """Move the clock forward by ``dt_s`` seconds and return the new time."""
        if dt_s < 0:
            raise ValueError(f"a clock cannot go back (dt_s={dt_s})")
        with self._lock:
            self._now_s += dt_s
            return self._now_s


class Trace:
    """A piecewise-linear function of time, held constant outside its breakpoints.

    Args:
        points: (t_s, value) breakpoints with strictly increasing ``t_s``.

    """

    def __init__(self, points: Sequence[Point]) -> None:
        if not points:
            raise ValueError("a trace needs at least one (t_s, value) point")
        times = [t for t, _ in points]
        if any(b <= a for a, b in zip(times, times[1:], strict=False)):
            raise ValueError(f"trace times must increase strictly, got {times}")
        self._times = times
        self._values = [float(v) for _, v in points]

    def at(self, t_s: float) -> float:
        """Value at ``t_s``, linearly interpolated between breakpoints."""
        i = bisect.bisect_right(self._times, t_s)
        if i == 0:
            return self._values[0]
        if i == len(self._times):
            return self._values[-1]
        t0, t1 = self._times[i - 1], self._times[i]
        v0, v1 = self._values[i - 1], self._values[i]
        return v0 + (v1 - v0) * (t_s - t0) / (t1 - t0)

    def integral(self, t_s: float) -> float:
        """Exact integral of the trace from 0 to ``t_s`` (value x seconds; 0 for ``t_s`` <= 0)."""
        if t_s <= 0:
            return 0.0
        edges = [0.0, *(t for t in self._times if 0.0 < t < t_s), t_s]
        return sum(
            (b - a) * (self.at(a) + self.at(b)) / 2 for a, b in zip(edges, edges[1:], strict=False)
        )


class _Updates:
    """Instants at which a sensor refreshes a value: ``phase + k * period``, or always."""

    def __init__(self, period_s: float | None, phase_s: float) -> None:
        if period_s is not None and period_s <= 0:
            raise ValueError(f"an update period must be positive, got {period_s}")
        self.period_s = period_s
        self.phase_s = phase_s

    def last(self, t_s: float) -> float:
        """The latest update instant at or before ``t_s`` (``t_s`` itself when continuous)."""
        if self.period_s is None:
            return t_s
        # A hair of tolerance so an update exactly at t_s is not lost to rounding.
        steps = math.floor((t_s - self.phase_s) / self.period_s + 1e-9)
        return self.phase_s + steps * self.period_s


_DEFAULT_INFO: dict[str, Any] = {
    "name": "Fake GPU",
    "memory_total_mb": 81920.0,
    "compute_capability": "9.0",
    "power_limit_w": 700.0,
    "default_power_limit_w": 700.0,
    "persistence_mode": True,
    "ecc_enabled": True,
    "mig_enabled": False,
}


class FakeGpu(GpuDevice):
    """A GPU that plays a scripted power trace.

    The trace's t=0 is the clock's reading at construction. The energy counter at time t is
    ``counter_offset_j`` plus the exact integral of power from 0 to t (J), minus
    ``backwards_by_j`` from ``backwards_at_s`` on (a driver reload), modulo ``counter_wrap_j``.

    Like NVML on a real GPU, the counter can be made to move only at update instants
    (``counter_update_period_s``, about 0.1 s on NVIDIA GPUs): between two updates it holds
    the integral up to the last one. The reported power can likewise be the mean of the trace
    over the last ``power_average_s`` seconds (recent GPUs report a ~1 s average), refreshed
    only every ``power_update_period_s``. Temperature can be reported in whole degrees, as
    NVML's ``nvmlDeviceGetTemperature`` does (an unsigned integer). Defaults reproduce an
    ideal sensor.

    Args:
        power_w: (t_s, power_w) breakpoints of piecewise-linear power (W).
        index: index the GPU reports.
        clock: returns seconds; the same clock the code under test uses.
        temperature_c: (t_s, temperature_c) breakpoints; None reports no temperature.
        counter_supported: False makes the GPU behave like a pre-Volta one (no counter).
        counter_offset_j: counter value at t=0 (J).
        counter_wrap_j: the counter wraps modulo this (J); None never wraps.
        backwards_at_s: trace time at which the counter jumps back; None never.
        backwards_by_j: how far it jumps back (J).
        info: overrides of :class:`GpuInfo` fields (name, uuid, mig_enabled, ...).
        processes: PIDs reported as compute processes.
        sm_clock_mhz: SM clock every sample reports.
        mem_clock_mhz: memory clock every sample reports.
        gpu_util_pct: utilisation every sample reports.
        mem_used_mb: memory in use every sample reports.
        throttle_reasons: throttle reasons every sample reports.
        counter_update_period_s: the counter moves only every this many seconds (NVML: about
            0.1 s); None moves it continuously.
        counter_update_phase_s: trace time of the first counter update (its offset from 0).
        power_average_s: reported power is the trace's mean over this many seconds before the
            reading (recent NVIDIA GPUs: about 1 s); None reports the instantaneous value.
        power_update_period_s: the reported power is refreshed only every this many seconds;
            None refreshes it at every reading.
        temperature_whole_degrees: report temperature truncated to whole degrees C. NVML
            reports an integer; whether the driver rounds or truncates is not documented, and
            an offset under one degree changes no slope or difference.

    """

    def __init__(
        self,
        power_w: Sequence[Point],
        *,
        index: int = 0,
        clock: Callable[[], float] = time.perf_counter,
        temperature_c: Sequence[Point] | None = None,
        counter_supported: bool = True,
        counter_offset_j: float = 0.0,
        counter_wrap_j: float | None = None,
        backwards_at_s: float | None = None,
        backwards_by_j: float = 0.0,
        info: Mapping[str, Any] | None = None,
        processes: Sequence[int] = (),
        sm_clock_mhz: float | None = None,
        mem_clock_mhz: float | None = None,
        gpu_util_pct: float | None = None,
        mem_used_mb: float | None = None,
        throttle_reasons: tuple[str, ...] = (),
        counter_update_period_s: float | None = None,
        counter_update_phase_s: float = 0.0,
        power_average_s: float | None = None,
        power_update_period_s: float | None = None,
        temperature_whole_degrees: bool = False,
    ) -> None:
        self.index = index
        self.counter_wrap_j = counter_wrap_j
        self._clock = clock
        self._t0_s = clock()
        self._power = Trace(power_w)
        self._temperature = None if temperature_c is None else Trace(temperature_c)
        self._counter_supported = counter_supported
        self._counter_offset_j = counter_offset_j
        self._backwards_at_s = backwards_at_s
        self._backwards_by_j = backwards_by_j
        self._info = GpuInfo.model_validate(
            {**_DEFAULT_INFO, "index": index, "uuid": f"GPU-fake-{index}", **(info or {})}
        )
        self._processes = list(processes)
        self._static = {
            "sm_clock_mhz": sm_clock_mhz,
            "mem_clock_mhz": mem_clock_mhz,
            "gpu_util_pct": gpu_util_pct,
            "mem_used_mb": mem_used_mb,
        }
        self._throttle_reasons = throttle_reasons
        self._counter_update = _Updates(counter_update_period_s, counter_update_phase_s)
        self._power_update = _Updates(power_update_period_s, 0.0)
        self._power_average_s = power_average_s
        self._whole_degrees = temperature_whole_degrees

    def trace_time_s(self, t_s: float) -> float:
        """Convert a clock reading into seconds since the trace started."""
        return t_s - self._t0_s

    def power_at(self, t_s: float) -> float:
        """True instantaneous power (W) of the trace at clock time ``t_s``."""
        return self._power.at(self.trace_time_s(t_s))

    def reported_power_w(self, t_s: float) -> float:
        """Power (W) as the sensor reports it at clock time ``t_s`` (averaged, refreshed late)."""
        trace_t_s = self._power_update.last(self.trace_time_s(t_s))
        average_s = self._power_average_s
        if not average_s:
            return self._power.at(trace_t_s)
        start_s = trace_t_s - average_s
        return (self._integral(trace_t_s) - self._integral(start_s)) / average_s

    def _integral(self, trace_t_s: float) -> float:
        # Power before the trace starts is the trace's first value, as Trace.at holds it.
        if trace_t_s >= 0:
            return self._power.integral(trace_t_s)
        return trace_t_s * self._power.at(trace_t_s)

    def true_energy_j(self, t0_s: float, t1_s: float) -> float:
        """Exact energy of the trace between two clock times (J), for checking a meter."""
        start, end = self.trace_time_s(t0_s), self.trace_time_s(t1_s)
        return self._power.integral(end) - self._power.integral(start)

    def counter_at(self, t_s: float) -> float | None:
        """Read the energy counter at clock time ``t_s`` (J); None if unsupported."""
        if not self._counter_supported:
            return None
        trace_t_s = self.trace_time_s(t_s)
        value = self._counter_offset_j + self._power.integral(self._counter_update.last(trace_t_s))
        if self._backwards_at_s is not None and trace_t_s >= self._backwards_at_s:
            value -= self._backwards_by_j
        if self.counter_wrap_j is not None:
            value %= self.counter_wrap_j
        return value

    def energy_counter_j(self) -> float | None:
        """Counter now (J), per the injected clock."""
        return self.counter_at(self._clock())

    def sample(self, t_s: float) -> GpuSample:
        """Everything the trace defines at clock time ``t_s``."""
        return GpuSample(
            gpu_index=self.index,
            t_s=t_s,
            power_w=self.reported_power_w(t_s),
            energy_counter_j=self.counter_at(t_s),
            temperature_c=self.reported_temperature_c(t_s),
            throttle_reasons=self._throttle_reasons,
            **self._static,
        )

    def reported_temperature_c(self, t_s: float) -> float | None:
        """Temperature (degC) as the sensor reports it at clock time ``t_s``; None without one."""
        if self._temperature is None:
            return None
        value = self._temperature.at(self.trace_time_s(t_s))
        return float(math.floor(value)) if self._whole_degrees else value

    def compute_processes(self) -> list[int]:
        """Return the scripted PIDs."""
        return list(self._processes)

    def info(self) -> GpuInfo:
        """Defaults of a 700 W, 80 GiB GPU, with the given overrides."""
        return self._info.model_copy()
