"""Replay scripted GPU power traces through the same interface as the NVML device.

:class:`FakeGpu` plays a piecewise-linear power trace and answers every :class:`GpuDevice`
call from it; its energy counter is the exact integral of that trace, so a test (or a user
checking an analysis) knows the true energy of any window. :class:`FakeClock` is a clock that
moves only when told to, which makes timing deterministic and instant. :class:`FakePynvml`
serves FakeGpu traces to a library that reads NVML itself (CodeCarbon), in NVML's own units.

This module ships in the package and never imports pytest.
"""

from __future__ import annotations

import bisect
import math
import os
import threading
import time
import types
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.energy.device import GpuDevice, GpuSample
from harness.io import write_text
from harness.schema.result import GpuInfo

Point = tuple[float, float]
"""A breakpoint of a trace: (seconds since the trace started, value)."""


EDGE_SKEW_S = 0.01
"""How far a mark on the real clock may sit from the instant a FakeGpu's counter was read (s).

A mark is dated at the midpoint of the clock reads around the counter reads; on a loaded
machine a context switch between them can take milliseconds. Tests that replay a trace in
real time allow this much per window edge (at the trace's power) and no more."""


def edge_tolerance_j(power_w: float, edges: int = 2) -> float:
    """The energy a real-clock window of a constant ``power_w`` trace may be off by (J)."""
    return power_w * EDGE_SKEW_S * edges


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


_FAKE_GPUS: weakref.WeakValueDictionary[str, FakeGpu] = weakref.WeakValueDictionary()
"""Live fake GPUs by UUID: what a fake engine started in this process can find."""
_FAKE_GPUS_BY_INDEX: weakref.WeakValueDictionary[int, FakeGpu] = weakref.WeakValueDictionary()
"""The same by index (the latest fake GPU made with each index)."""


def visible_fake_gpus(integer_indices_only: bool = False) -> list[FakeGpu]:
    """The fake GPUs ``CUDA_VISIBLE_DEVICES`` names, in its order.

    What a fake engine (vLLM, TensorRT-LLM) started now would compute on, as the real engines
    place their workers on the first visible CUDA devices. An entry is a UUID or an integer
    index in PCI bus order (a fake GPU's bus id follows its index; the live fake GPU with that
    index). Unset or naming no fake GPU: none.

    Args:
        integer_indices_only: read every entry with ``int()``, as vLLM does (it maps its
            devices to NVML by converting each entry, and fails at start-up on a UUID).

    Raises:
        ValueError: ``integer_indices_only`` and an entry is not an integer.

    """
    tokens = [t.strip() for t in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
              if t.strip()]
    if integer_indices_only:
        return [gpu for t in tokens if (gpu := _FAKE_GPUS_BY_INDEX.get(int(t))) is not None]
    found = (_FAKE_GPUS_BY_INDEX.get(int(t)) if t.isdigit() else _FAKE_GPUS.get(t)
             for t in tokens)
    return [gpu for gpu in found if gpu is not None]


FAKE_WORKER_PID_BASE = 4_000_000
"""PIDs of fake engine workers (above Linux's default pid_max, so never a real process)."""


class FakeWorkers:
    """An engine's GPU workers, one per rank, on the first visible fake GPUs.

    Like vLLM and TensorRT-LLM, an engine computes on the first ``tensor x pipeline parallel``
    CUDA devices that ``CUDA_VISIBLE_DEVICES`` names; each worker is a process that NVML lists
    on its GPU and that holds ``memory_fraction`` of the GPU's memory (weights plus the KV-cache
    reservation) until the engine shuts down. Fake engines use this so the harness can prove,
    as on real GPUs, where the engine runs.

    Args:
        world_size: number of ranks (GPUs).
        memory_fraction: share of each GPU's memory a worker holds.
        integer_indices_only: read ``CUDA_VISIBLE_DEVICES`` as vLLM does (integers only).

    """

    def __init__(self, world_size: int, memory_fraction: float,
                 integer_indices_only: bool = False) -> None:
        self.gpus = visible_fake_gpus(integer_indices_only)[:world_size]
        for rank, gpu in enumerate(self.gpus):
            gpu.occupy(FAKE_WORKER_PID_BASE + rank,
                       memory_fraction * gpu.info().memory_total_mb)

    def stop(self) -> None:
        """The workers exit: their processes and memory leave the GPUs."""
        for rank, gpu in enumerate(self.gpus):
            gpu.release(FAKE_WORKER_PID_BASE + rank)
        self.gpus = []


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
        self.counter_update_period_s = counter_update_period_s or 0.0
        self._clock = clock
        self._t0_s = clock()
        self._power = Trace(power_w)
        self._temperature = None if temperature_c is None else Trace(temperature_c)
        self._counter_supported = counter_supported
        self._counter_offset_j = counter_offset_j
        self._backwards_at_s = backwards_at_s
        self._backwards_by_j = backwards_by_j
        self._info = GpuInfo.model_validate(
            {**_DEFAULT_INFO, "index": index, "uuid": f"GPU-fake-{index}",
             "pci_bus_id": f"00000000:{index + 1:02X}:00.0", **(info or {})}
        )
        self._processes = list(processes)
        self._mem_used_mb = mem_used_mb
        self._occupants: dict[int, float] = {}
        self._static = {
            "sm_clock_mhz": sm_clock_mhz,
            "mem_clock_mhz": mem_clock_mhz,
            "gpu_util_pct": gpu_util_pct,
        }
        self._throttle_reasons = throttle_reasons
        self._counter_update = _Updates(counter_update_period_s, counter_update_phase_s)
        self._power_update = _Updates(power_update_period_s, 0.0)
        self._power_average_s = power_average_s
        self._whole_degrees = temperature_whole_degrees
        _FAKE_GPUS[self._info.uuid] = self
        _FAKE_GPUS_BY_INDEX[index] = self

    def occupy(self, pid: int, memory_mb: float) -> None:
        """A process starts computing here: NVML lists it and its memory (what engines do)."""
        self._occupants[pid] = self._occupants.get(pid, 0.0) + memory_mb

    def release(self, pid: int) -> None:
        """The process ended: it leaves the process list and frees its memory."""
        self._occupants.pop(pid, None)

    def mem_used_mb(self) -> float | None:
        """Device memory in use (MiB): the scripted figure plus what occupants hold."""
        if self._mem_used_mb is None and not self._occupants:
            return None
        return (self._mem_used_mb or 0.0) + sum(self._occupants.values())

    def now_s(self) -> float:
        """The clock's reading now (s)."""
        return self._clock()

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
            mem_used_mb=self.mem_used_mb(),
            **self._static,
        )

    def reported_temperature_c(self, t_s: float) -> float | None:
        """Temperature (degC) as the sensor reports it at clock time ``t_s``; None without one."""
        if self._temperature is None:
            return None
        value = self._temperature.at(self.trace_time_s(t_s))
        return float(math.floor(value)) if self._whole_degrees else value

    def compute_processes(self) -> list[int]:
        """Return the scripted PIDs and those of processes occupying the GPU."""
        return [*self._processes, *self._occupants]

    def info(self) -> GpuInfo:
        """Defaults of a 700 W, 80 GiB GPU, with the given overrides."""
        return self._info.model_copy()


class FakePynvml(types.ModuleType):
    """A stand-in for the ``pynvml`` module that serves :class:`FakeGpu` traces, in NVML's units.

    Put it in ``sys.modules["pynvml"]`` before a library that reads NVML itself is imported
    (CodeCarbon imports ``pynvml`` and calls ``nvmlInit()`` at import time); that library then
    reads the traces exactly as it would read GPUs. It answers the calls CodeCarbon makes, with
    the real pynvml's names and parameters: the energy counter in integer millijoules (moving
    only when the FakeGpu's counter does, every ~100 ms like NVML's), power in integer
    milliwatts (the FakeGpu's reported, averaged power), the handle of GPU ``i`` is the FakeGpu
    itself. ``gpus`` may be replaced to serve another machine through the same module.

    Args:
        gpus: the machine's GPUs, in NVML index order.

    """

    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2

    class NVMLError(Exception):
        """Any NVML failure, as pynvml raises it."""

    class NVMLError_NotSupported(NVMLError):
        """The GPU does not support the query (a pre-Volta GPU's energy counter)."""

    def __init__(self, gpus: Sequence[FakeGpu] = ()) -> None:
        super().__init__("pynvml")
        self.gpus = list(gpus)
        self.inits = 0
        """nvmlInit calls so far."""
        self.shutdowns = 0
        """nvmlShutdown calls so far: a caller that initialised NVML must shut it down."""

    def nvmlInit(self) -> None:  # pynvml's names, here and below
        """Nothing to load; counted."""
        self.inits += 1

    def nvmlShutdown(self) -> None:
        """Nothing to release; counted."""
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        """A driver version."""
        return "999.1"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        """CUDA 12.9, encoded as NVML does (1000 * major + 10 * minor)."""
        return 12090

    def nvmlDeviceGetCount(self) -> int:
        """Number of GPUs."""
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        """The GPU at an NVML index (its handle)."""
        if not 0 <= index < len(self.gpus):
            raise self.NVMLError(f"no GPU at index {index}")
        return self.gpus[index]

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu) -> int:
        """Energy counter (integer mJ); NotSupported on a GPU without one."""
        counter_j = handle.energy_counter_j()
        if counter_j is None:
            raise self.NVMLError_NotSupported("no energy counter")
        return round(counter_j * 1000)

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        """Power as the sensor reports it (integer mW)."""
        return round(handle.reported_power_w(handle.now_s()) * 1000)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeGpu) -> int:
        """Power limit (integer mW)."""
        return round((handle.info().power_limit_w or 0.0) * 1000)

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:
        """Product name."""
        return handle.info().name

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str:
        """UUID."""
        return handle.info().uuid

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu, version: Any = None) -> Any:
        """Total, used and free memory (bytes)."""
        total = round(handle.info().memory_total_mb * 1024 * 1024)
        used = round((handle.sample(handle.now_s()).mem_used_mb or 0.0) * 1024 * 1024)
        return types.SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetTemperature(self, handle: FakeGpu, sensor: int) -> int:
        """Core temperature (integer degC; 0 when the trace has none)."""
        return round(handle.sample(handle.now_s()).temperature_c or 0.0)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> Any:
        """Utilisation (%)."""
        util = round(handle.sample(handle.now_s()).gpu_util_pct or 0.0)
        return types.SimpleNamespace(gpu=util, memory=0)

    def nvmlDeviceGetComputeMode(self, handle: FakeGpu) -> int:
        """Default compute mode."""
        return 0

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu) -> list[Any]:
        """The scripted compute processes (memory use unknown: 0)."""
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=0)
                for pid in handle.compute_processes()]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeGpu) -> list[Any]:
        """No graphics processes."""
        return []


class _FakeZeusGpu:
    """One entry of :attr:`FakeZeusGpus.gpus`: Zeus keeps the NVML index as ``gpu_index``."""

    def __init__(self, gpu_index: int) -> None:
        self.gpu_index = gpu_index


class FakeZeusGpus:
    """Zeus's GPU collection (what ``zeus.device.get_gpus()`` returns) over :class:`FakeGpu`.

    Behaves like Zeus 0.16's ``NVIDIAGPUs``: when made, it opens the GPUs that
    ``CUDA_VISIBLE_DEVICES`` names, each token read with ``int()`` as an NVML index (a UUID is a
    ``ValueError``; every GPU when unset), and every getter takes the position in that list.
    Energy is NVML's total-energy counter in integer millijoules (it moves only when the
    FakeGpu's counter does); power is NVML's instantaneous power field
    (``NVML_FI_DEV_POWER_INSTANT``) in integer milliwatts: the trace's value at that instant,
    not the ~1 s average that ``nvmlDeviceGetPowerUsage`` reports.

    Args:
        machine: every GPU of the machine, in NVML index order.

    """

    def __init__(self, machine: Sequence[FakeGpu]) -> None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        indices = (list(range(len(machine))) if visible is None
                   else [int(token) for token in visible.split(",")])
        self._machine = list(machine)
        self.gpus = [_FakeZeusGpu(index) for index in indices]

    def __len__(self) -> int:
        return len(self.gpus)

    def _gpu(self, gpu_index: int) -> FakeGpu:
        return self._machine[self.gpus[gpu_index].gpu_index]

    def supports_get_total_energy_consumption(self, gpu_index: int) -> bool:
        """Whether the GPU has the counter (Volta or newer)."""
        return self._gpu(gpu_index).energy_counter_j() is not None

    def get_total_energy_consumption(self, gpu_index: int) -> int:
        """The energy counter (integer mJ)."""
        counter_j = self._gpu(gpu_index).energy_counter_j()
        if counter_j is None:
            raise RuntimeError("the GPU has no total-energy counter")
        return round(counter_j * 1000)

    def get_instant_power_usage(self, gpu_index: int) -> int:
        """Instantaneous power (integer mW)."""
        gpu = self._gpu(gpu_index)
        return round(gpu.power_at(gpu.now_s()) * 1000)


def fake_zeus_get_gpus(machine: Sequence[FakeGpu]) -> Callable[[], FakeZeusGpus]:
    """A stand-in for ``zeus.device.get_gpus``: one :class:`FakeZeusGpus`, made at first call.

    Like Zeus, the collection is made once and every later call returns it, whatever
    ``CUDA_VISIBLE_DEVICES`` says by then.
    """
    made: list[FakeZeusGpus] = []

    def get_gpus() -> FakeZeusGpus:
        if not made:
            made.append(FakeZeusGpus(machine))
        return made[0]

    return get_gpus


class FakePowercap:
    """A powercap tree on disk laid out as the kernel does, with counters that wrap.

    As in ``/sys/class/powercap``: each zone is a directory of the device tree
    (``intel-rapl/intel-rapl:N``, a subzone ``intel-rapl:N:M`` inside its zone) holding
    ``name``, ``max_energy_range_uj`` and ``energy_uj``, and a link ``intel-rapl:N`` (or
    ``intel-rapl:N:M``) to it at the top. ``root / "intel-rapl"`` is the nested tree alone,
    as a container gets it bind-mounted. :meth:`consume` adds true
    energy to a zone and writes the counter as the hardware keeps it, modulo its range, so a
    test knows the true energy of any window however often the counter wrapped.

    Args:
        root: the directory to build the tree in (it plays ``/sys/class/powercap``).

    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._true_uj: dict[str, int] = {}
        self._range_uj: dict[str, int] = {}

    def zone_dir(self, zone: str) -> Path:
        """The real directory of ``zone`` (a subzone sits inside its package's directory)."""
        parts = zone.split(":")
        top = self.root / "intel-rapl" / ":".join(parts[:2])
        return top if len(parts) == 2 else top / zone

    def add_zone(self, zone: str, name: str, max_energy_range_uj: int,
                 energy_uj: int = 0) -> None:
        """Create ``zone`` (e.g. ``intel-rapl:0``, name ``package-0``) with its counter."""
        path = self.zone_dir(zone)
        path.mkdir(parents=True, exist_ok=True)
        (self.root / zone).symlink_to(path.relative_to(self.root))
        (path / "name").write_text(f"{name}\n")
        (path / "max_energy_range_uj").write_text(f"{max_energy_range_uj}\n")
        self._true_uj[zone] = energy_uj
        self._range_uj[zone] = max_energy_range_uj
        self._write(zone)

    def consume(self, zone: str, energy_j: float) -> None:
        """Add ``energy_j`` of true energy to ``zone``; the counter wraps at its range."""
        self._true_uj[zone] += round(energy_j * 1e6)
        self._write(zone)

    def counter_uj(self, zone: str) -> int:
        """What ``energy_uj`` reads now."""
        return self._true_uj[zone] % self._range_uj[zone]

    def _write(self, zone: str) -> None:
        # Atomically (a temporary file renamed over it), as a sysfs read of energy_uj is one
        # atomic show(): a meter's thread racing consume() never reads a half-written counter.
        write_text(self.zone_dir(zone) / "energy_uj", f"{self.counter_uj(zone)}\n")
