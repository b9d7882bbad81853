"""Zeus as an alternative energy source, behind the same device interface as NVML.

``energy.backend: zeus`` reads each GPU through ``zeus.device.get_gpus()`` (the ML.ENERGY
project's device layer) instead of calling NVML directly: the counter is Zeus's
``get_total_energy_consumption`` (mJ) and power its ``get_instant_power_usage`` (mW). Methods
are recorded as ``zeus_counter`` / ``zeus_power_integration``. Zeus is an extra
(``pip install 'llem[zeus]'``) and is imported only here, only when chosen.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from harness.energy.device import EMPTY_GPUS, GpuDevice, GpuSample, GpuSet
from harness.errors import EnergyError, PreflightError
from harness.schema.result import GpuInfo

P = ParamSpec("P")
T = TypeVar("T")


def _zeus_errors(function: Callable[P, T]) -> Callable[P, T]:
    """Translate any Zeus failure into EnergyError (Zeus has no single exception root)."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return function(*args, **kwargs)
        except EnergyError:
            raise
        except Exception as error:
            raise EnergyError(f"zeus failed: {type(error).__name__}: {error}") from error

    return wrapper


class ZeusGpu(GpuDevice):
    """One GPU read through Zeus's ``GPUs`` collection.

    Args:
        gpus: the object ``zeus.device.get_gpus()`` returned.
        index: the GPU's index in that collection.
    """

    def __init__(self, gpus: Any, index: int) -> None:
        self._gpus = gpus
        self.index = index
        self._has_counter = bool(gpus.supports_get_total_energy_consumption(index))

    @_zeus_errors
    def info(self) -> GpuInfo:
        """Name, power limit and persistence as Zeus reports them (no UUID through Zeus)."""
        return GpuInfo(
            index=self.index,
            name=str(self._gpus.get_name(self.index)),
            uuid=f"zeus-gpu-{self.index}",
            memory_total_mb=0.0,
            power_limit_w=self._gpus.get_power_management_limit(self.index) / 1000.0,
            persistence_mode=bool(self._gpus.get_persistence_mode(self.index)),
        )

    @_zeus_errors
    def energy_counter_j(self) -> float | None:
        """Zeus's total-energy reading in joules (None when the GPU has no counter)."""
        if not self._has_counter:
            return None
        return float(self._gpus.get_total_energy_consumption(self.index)) / 1000.0

    @_zeus_errors
    def sample(self, t_s: float) -> GpuSample:
        """Power, counter and temperature; Zeus exposes no clocks or utilisation."""
        return GpuSample(
            gpu_index=self.index,
            t_s=t_s,
            power_w=float(self._gpus.get_instant_power_usage(self.index)) / 1000.0,
            energy_counter_j=self.energy_counter_j(),
            temperature_c=float(self._gpus.get_gpu_temperature(self.index)),
        )

    def compute_processes(self) -> list[int]:
        """Zeus does not list processes; foreign-process warnings need NVML."""
        return []


def discover_zeus_gpus(indices: list[int] | None = None) -> GpuSet:
    """GPUs through Zeus; PreflightError naming the extra when Zeus is not installed."""
    try:
        from zeus.device import get_gpus
    except ImportError as error:
        raise PreflightError("energy.backend is 'zeus' but zeus is not installed",
                             fix=("pip install 'llem[zeus]'; in a container, rebuild its "
                                  "image: llem images build BACKEND --extras zeus (or choose "
                                  "energy.backend: nvml)")
                             ) from error
    gpus = _zeus_errors(get_gpus)()
    if len(gpus) == 0:
        return EMPTY_GPUS
    chosen = indices if indices is not None else list(range(len(gpus)))
    return GpuSet([ZeusGpu(gpus, index) for index in chosen], source="zeus")
