"""The small device interface every energy source reads GPUs through.

NVML is reached only through :class:`GpuDevice`; tests and users replay traces with
``harness.testing.FakeGpu``, which implements the same interface. Absent hardware is an empty
:class:`GpuSet`, never ``None``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from harness.schema.result import GpuInfo


@dataclass(frozen=True)
class GpuSample:
    """One reading of one GPU.

    Attributes:
        gpu_index: index of the GPU as the harness sees it.
        t_s: seconds on the harness clock (``time.perf_counter()``).
        power_w: instantaneous power as the driver reports it (W; on recent GPUs a ~1 s
            average).
        energy_counter_j: total-energy counter (J since driver load), None if unsupported.
        temperature_c: GPU core temperature (deg C).
        sm_clock_mhz: SM clock.
        mem_clock_mhz: memory clock.
        gpu_util_pct: utilisation over the driver's last sample period.
        mem_used_mb: device memory in use.
        throttle_reasons: active clock-throttle reasons, empty when none.
    """

    gpu_index: int
    t_s: float
    power_w: float | None
    energy_counter_j: float | None
    temperature_c: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    gpu_util_pct: float | None = None
    mem_used_mb: float | None = None
    throttle_reasons: tuple[str, ...] = ()


class GpuDevice(abc.ABC):
    """One GPU, read through its vendor library.

    Attributes:
        index: index of the GPU as the harness sees it.
        counter_wrap_j: value (J) at which the energy counter wraps back to zero, or None if it
            never wraps. Lets a meter tell a wrap from a counter that went backwards.
        counter_update_period_s: how often the energy counter moves (s): a reading holds the
            energy up to its last update. NVML's counter moves about every 100 ms.

    """

    index: int
    counter_wrap_j: float | None = None
    counter_update_period_s: float = 0.1

    @abc.abstractmethod
    def info(self) -> GpuInfo:
        """Static facts: name, UUID, memory, power limits, persistence, ECC, MIG."""

    @abc.abstractmethod
    def energy_counter_j(self) -> float | None:
        """Total-energy counter in joules (None when the GPU has none: pre-Volta)."""

    @abc.abstractmethod
    def sample(self, t_s: float) -> GpuSample:
        """Read power, counter, temperature, clocks, utilisation, memory and throttling."""

    @abc.abstractmethod
    def compute_processes(self) -> list[int]:
        """PIDs of compute processes on this GPU."""


class GpuSet(Sequence[GpuDevice]):
    """The GPUs a run measures. Empty on a machine without NVIDIA GPUs."""

    def __init__(self, devices: Sequence[GpuDevice] = (), driver_version: str | None = None,
                 cuda_version: str | None = None, source: str = "nvml") -> None:
        self._devices = list(devices)
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.source = source  # names the energy method: "<source>_counter", ...

    def __getitem__(self, index: int) -> GpuDevice:  # type: ignore[override]
        return self._devices[index]

    def __len__(self) -> int:
        return len(self._devices)

    def __iter__(self) -> Iterator[GpuDevice]:
        return iter(self._devices)

    def close(self) -> None:
        """Release the vendor library (NVML shutdown); a no-op for an empty set."""

    def subset(self, devices: Sequence[GpuDevice]) -> GpuSet:
        """The same machine's GPUs narrowed to ``devices``; closing it closes this set."""
        return _Subset(devices, self)


class _Subset(GpuSet):
    """Some GPUs of a set; the vendor library stays owned (and closed) by the whole set."""

    def __init__(self, devices: Sequence[GpuDevice], whole: GpuSet) -> None:
        super().__init__(devices, whole.driver_version, whole.cuda_version, whole.source)
        self._whole = whole

    def close(self) -> None:
        """Close the whole set (NVML shutdown)."""
        self._whole.close()


EMPTY_GPUS = GpuSet()
