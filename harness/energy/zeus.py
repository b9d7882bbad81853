"""Zeus as an alternative energy source, behind the same device interface as NVML.

``energy.backend: zeus`` reads the energy of each measured GPU through ``zeus.device.get_gpus()``
(the ML.ENERGY project's device layer) instead of calling NVML directly: the counter is Zeus's
``get_total_energy_consumption`` (mJ) and power its ``get_instant_power_usage`` (mW). Methods
are recorded as ``zeus_counter`` / ``zeus_power_integration``. Zeus opens exactly the GPUs the
run measures (checked by NVML index), and everything Zeus does not expose (UUID, device facts,
temperature, clocks, processes) comes from NVML for the same GPU. Zeus is an extra
(``pip install 'llem[zeus]'``) and is imported only here, only when chosen.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar

from harness.energy.device import GpuDevice, GpuSample, GpuSet
from harness.energy.selection import VISIBLE_ENV
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
    """One GPU whose energy and power are read through Zeus's ``GPUs`` collection.

    Args:
        gpus: the object ``zeus.device.get_gpus()`` returned.
        zeus_index: the GPU's index in that collection.
        facts: the same GPU through NVML: UUID, device facts, temperature, clocks and
            processes, which Zeus does not expose, so baseline cache, MIG, power-limit and
            foreign-process checks work with Zeus as with NVML.
    """

    def __init__(self, gpus: Any, zeus_index: int, facts: GpuDevice) -> None:
        self._gpus = gpus
        self._zeus_index = zeus_index
        self._facts = facts
        self.index = facts.index
        self._has_counter = bool(_zeus_errors(gpus.supports_get_total_energy_consumption)(
            zeus_index))

    def info(self) -> GpuInfo:
        """Static facts from NVML (name, UUID, memory, limits, persistence, ECC, MIG)."""
        return self._facts.info()

    @_zeus_errors
    def energy_counter_j(self) -> float | None:
        """Zeus's total-energy reading in joules (None when the GPU has no counter)."""
        if not self._has_counter:
            return None
        return float(self._gpus.get_total_energy_consumption(self._zeus_index)) / 1000.0

    def sample(self, t_s: float) -> GpuSample:
        """Power and counter from Zeus; temperature, clocks and the rest from NVML."""
        power_w = _zeus_errors(self._gpus.get_instant_power_usage)(self._zeus_index) / 1000.0
        facts = self._facts.sample(t_s)
        return replace(facts, power_w=float(power_w), energy_counter_j=self.energy_counter_j())

    def compute_processes(self) -> list[int]:
        """Compute processes as NVML lists them (Zeus does not)."""
        return self._facts.compute_processes()


@contextlib.contextmanager
def _visible_as_nvml_indices(indices: list[int]) -> Iterator[None]:
    """Zeus numbers GPUs through CUDA_VISIBLE_DEVICES read as NVML indices: point it at ours.

    Zeus accepts only integer indices there (no UUIDs), so for the moment Zeus opens its GPUs
    the variable holds the measured GPUs' NVML indices; it is restored before anything
    initialises CUDA.
    """
    saved = os.environ.get(VISIBLE_ENV)
    os.environ[VISIBLE_ENV] = ",".join(str(index) for index in indices)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(VISIBLE_ENV, None)
        else:
            os.environ[VISIBLE_ENV] = saved


def discover_zeus_gpus(facts: GpuSet, get_gpus: Callable[[], Any] | None = None) -> GpuSet:
    """Read the run's measured GPUs through Zeus: the same GPUs as NVML, in the same order.

    Args:
        facts: the measured GPUs through NVML (empty on a machine without NVIDIA GPUs).
        get_gpus: ``zeus.device.get_gpus`` (a fake in tests); imported when None.

    Raises:
        PreflightError: Zeus is not installed, or it opened other GPUs than the measured ones.
        EnergyError: Zeus failed.

    """
    if len(facts) == 0:
        return facts
    if get_gpus is None:
        get_gpus = _import_get_gpus()
    indices = [gpu.index for gpu in facts]
    with _visible_as_nvml_indices(indices):
        gpus = _zeus_errors(get_gpus)()
    opened = [getattr(gpu, "gpu_index", None) for gpu in getattr(gpus, "gpus", [])]
    if opened != indices:
        raise PreflightError(
            f"Zeus opened NVML GPUs {opened}, but the run measures {indices}",
            fix="Zeus keeps the GPUs of its first get_gpus() call for the whole process: run "
            "each experiment in its own process (python -m harness run), as every runner does",
        )
    devices = [ZeusGpu(gpus, position, gpu) for position, gpu in enumerate(facts)]
    return _ZeusGpuSet(devices, facts)


class _ZeusGpuSet(GpuSet):
    """Zeus-read GPUs over the NVML set that supplies their facts; closing closes NVML."""

    def __init__(self, devices: list[ZeusGpu], facts: GpuSet) -> None:
        super().__init__(devices, facts.driver_version, facts.cuda_version, source="zeus")
        self._facts = facts

    def close(self) -> None:
        """Release NVML."""
        self._facts.close()


def _import_get_gpus() -> Callable[[], Any]:
    try:
        from zeus.device import get_gpus
    except ImportError as error:
        raise PreflightError("energy.backend is 'zeus' but zeus is not installed",
                             fix=("pip install 'llem[zeus]'; in a container, rebuild its "
                                  "image: llem images build BACKEND --extras zeus (or choose "
                                  "energy.backend: nvml)")
                             ) from error
    return get_gpus  # type: ignore[no-any-return]
