"""NVIDIA GPUs read through NVML (the ``pynvml`` module of the nvidia-ml-py package).

``pynvml`` is imported inside functions, never at module level, so this module imports on a
machine without a GPU or driver. Every NVML error is translated into
:class:`harness.errors.EnergyError` at one boundary (:func:`_to_energy_error`), reached through
the :func:`_nvml_call` decorator on each device method and from :func:`discover_gpus`. A read
that a GPU does not support (``NVMLError_NotSupported``) is not an error: the value is None.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from harness.energy.device import EMPTY_GPUS, GpuDevice, GpuSample, GpuSet
from harness.errors import EnergyError, PreflightError
from harness.schema.result import GpuInfo

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

NVML_COUNTER_WRAP_J = 2**64 / 1000
"""The total-energy counter is an unsigned 64-bit count of millijoules: it wraps here (J)."""

_MIB = 1024 * 1024

# Bit values of nvmlClocksEventReason* / nvmlClocksThrottleReason* (nvml.h); kept here so
# decoding needs no driver. Bits 0x200 and 0x400 exist only in the older "throttle" names.
THROTTLE_REASON_BITS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
    (0x200, "board_limit"),
    (0x400, "reliability"),
)

SLOWDOWN_REASONS = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
        "board_limit",
        "reliability",
    }
)
"""Reasons that mean the GPU ran slower than it could (``gpu_idle`` and the rest do not)."""

ROUTINE_REASONS = frozenset({"sw_power_cap"})
"""Slowdowns that are the GPU working as designed under load: holding its power limit. Seen
and recorded, but not the ``throttling`` warning (it would fire on nearly every busy run)."""


def decode_throttle_reasons(mask: int) -> tuple[str, ...]:
    """Turn an NVML clocks-event bitmask into reason names, in bit order.

    Args:
        mask: value of ``nvmlDeviceGetCurrentClocksEventReasons``.

    Returns:
        Names such as ``("sw_power_cap", "hw_thermal_slowdown")``; unknown bits come out as
        ``"unknown_0x..."`` so a new driver's reason is visible rather than dropped.

    """
    names = [name for bit, name in THROTTLE_REASON_BITS if mask & bit]
    known = functools.reduce(lambda acc, item: acc | item[0], THROTTLE_REASON_BITS, 0)
    unknown = mask & ~known
    bit = 1
    while unknown >= bit:
        if unknown & bit:
            names.append(f"unknown_{bit:#x}")
        bit <<= 1
    return tuple(names)


def _import_pynvml() -> Any:
    import pynvml

    return pynvml


def _fix_for(code: int, nvml: Any) -> str | None:
    fixes = {
        nvml.NVML_ERROR_NO_PERMISSION: "Give the process access to the GPU device nodes (in "
        "Docker: --gpus with the NVIDIA container toolkit).",
        nvml.NVML_ERROR_GPU_IS_LOST: "The GPU fell off the bus: check nvidia-smi and the kernel "
        "log, reset the GPU or reboot, then rerun.",
        nvml.NVML_ERROR_RESET_REQUIRED: "Reset the GPU (nvidia-smi -r) or reboot, then rerun.",
        nvml.NVML_ERROR_DRIVER_NOT_LOADED: "The NVIDIA driver was unloaded during the run; "
        "reload it or reboot, then rerun.",
        nvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH: "The driver was upgraded without a reboot; "
        "reboot, then rerun.",
        nvml.NVML_ERROR_UNINITIALIZED: "NVML was shut down before this read; close the GpuSet "
        "only after measuring.",
    }
    return fixes.get(code)


def _to_energy_error(error: Exception, action: str) -> EnergyError:
    """Translate an NVML error into an llem error: the one place this happens."""
    nvml = _import_pynvml()
    code = getattr(error, "value", None)
    fix = _fix_for(code, nvml) if isinstance(code, int) else None
    return EnergyError(f"NVML could not {action}: {error}", fix=fix)


def _is_nvml_error(error: BaseException) -> bool:
    try:
        nvml = _import_pynvml()
    except ImportError:
        return False
    return isinstance(error, nvml.NVMLError)


def _nvml_call(
    action: str,
) -> Callable[[Callable[Concatenate[NvmlGpu, P], R]], Callable[Concatenate[NvmlGpu, P], R]]:
    """Decorate an :class:`NvmlGpu` method so NVML errors leave it as ``EnergyError``."""

    def decorate(
        method: Callable[Concatenate[NvmlGpu, P], R],
    ) -> Callable[Concatenate[NvmlGpu, P], R]:
        @functools.wraps(method)
        def wrapper(self: NvmlGpu, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(self, *args, **kwargs)
            except Exception as e:
                if _is_nvml_error(e):
                    raise _to_energy_error(e, f"{action} of GPU {self.index}") from e
                raise

        return wrapper

    return decorate


class NvmlGpu(GpuDevice):
    """One NVIDIA GPU read through NVML.

    Args:
        index: NVML index of the GPU (not affected by ``CUDA_VISIBLE_DEVICES``).
        nvml: the ``pynvml`` module, or an object with the same functions (tests pass a small
            fake); imported when None. NVML must already be initialised.

    Raises:
        EnergyError: NVML has no GPU at ``index`` or cannot open it.

    """

    counter_wrap_j = NVML_COUNTER_WRAP_J

    def __init__(self, index: int, nvml: Any = None) -> None:
        self.index = index
        self._nvml = _import_pynvml() if nvml is None else nvml
        self._handle = self._open_handle()
        self.secondary_read_errors = 0
        """Failed reads of secondary fields (temperature, clocks, ...) so far."""

    @_nvml_call("open the handle")
    def _open_handle(self) -> Any:
        return self._nvml.nvmlDeviceGetHandleByIndex(self.index)

    def _optional(self, function: str, *args: Any) -> Any:
        """Call an NVML function, or return None if this GPU or driver does not support it."""
        call = getattr(self._nvml, function, None)
        if call is None:
            return None
        try:
            return call(self._handle, *args)
        except Exception as e:
            nvml = _import_pynvml()
            if isinstance(e, (nvml.NVMLError_NotSupported, nvml.NVMLError_FunctionNotFound)):
                return None
            raise

    @_nvml_call("read the total-energy counter")
    def energy_counter_j(self) -> float | None:
        """Total energy since the driver loaded (J); None before Volta.

        NVML counts millijoules in an unsigned 64-bit integer, updated about every 100 ms.
        """
        millijoules = self._optional("nvmlDeviceGetTotalEnergyConsumption")
        return None if millijoules is None else millijoules / 1000.0

    @_nvml_call("read power and the energy counter")
    def sample(self, t_s: float) -> GpuSample:
        """Read everything the time series records; unsupported values are None.

        Power and the energy counter are what the sample is for: an error reading them fails
        the sample (the sampler counts it). A transient error in a secondary field
        (temperature, clocks, utilisation, memory, throttling) leaves only that field None and
        is counted in :attr:`secondary_read_errors`, so it never drops the power and counter
        read with it.

        Args:
            t_s: timestamp (harness clock, s) to label the sample with.

        """
        nvml = self._nvml
        power_mw = self._optional("nvmlDeviceGetPowerUsage")
        counter_j = self.energy_counter_j()
        utilisation = self._secondary("nvmlDeviceGetUtilizationRates")
        memory = self._secondary("nvmlDeviceGetMemoryInfo")
        return GpuSample(
            gpu_index=self.index,
            t_s=t_s,
            power_w=None if power_mw is None else power_mw / 1000.0,
            energy_counter_j=counter_j,
            temperature_c=_float(
                self._secondary("nvmlDeviceGetTemperature", nvml.NVML_TEMPERATURE_GPU)
            ),
            sm_clock_mhz=_float(self._secondary("nvmlDeviceGetClockInfo", nvml.NVML_CLOCK_SM)),
            mem_clock_mhz=_float(self._secondary("nvmlDeviceGetClockInfo", nvml.NVML_CLOCK_MEM)),
            gpu_util_pct=None if utilisation is None else float(utilisation.gpu),
            mem_used_mb=None if memory is None else memory.used / _MIB,
            throttle_reasons=self._secondary_reasons(),
        )

    def _secondary(self, function: str, *args: Any) -> Any:
        """An optional read whose failure costs only its own value (counted, not raised)."""
        try:
            return self._optional(function, *args)
        except Exception as e:
            if not _is_nvml_error(e):
                raise
            self.secondary_read_errors += 1
            return None

    def _secondary_reasons(self) -> tuple[str, ...]:
        try:
            return self.throttle_reasons()
        except EnergyError:
            self.secondary_read_errors += 1
            return ()

    @_nvml_call("read the clock-throttle reasons")
    def throttle_reasons(self) -> tuple[str, ...]:
        """Active clock-event (throttle) reasons; empty when none or unsupported."""
        mask = self._optional("nvmlDeviceGetCurrentClocksEventReasons")
        if mask is None:  # drivers before 535 only have the older name
            mask = self._optional("nvmlDeviceGetCurrentClocksThrottleReasons")
        return () if mask is None else decode_throttle_reasons(int(mask))

    @_nvml_call("list the compute processes")
    def compute_processes(self) -> list[int]:
        """PIDs of compute processes on this GPU (empty when NVML cannot list them)."""
        processes = self._optional("nvmlDeviceGetComputeRunningProcesses") or []
        return [int(process.pid) for process in processes]

    @_nvml_call("read the device information")
    def info(self) -> GpuInfo:
        """Name, UUID, memory (MiB), compute capability, power limits (W), persistence, ECC, MIG.

        Also the applications clocks (MHz) and auto boost, which change idle power.
        """
        nvml = self._nvml
        memory = nvml.nvmlDeviceGetMemoryInfo(self._handle)
        capability = self._optional("nvmlDeviceGetCudaComputeCapability")
        return GpuInfo(
            index=self.index,
            name=_text(self._nvml.nvmlDeviceGetName(self._handle)),
            uuid=_text(self._nvml.nvmlDeviceGetUUID(self._handle)),
            memory_total_mb=memory.total / _MIB,
            pci_bus_id=_bus_id(self._optional("nvmlDeviceGetPciInfo")),
            compute_capability=None if capability is None else f"{capability[0]}.{capability[1]}",
            power_limit_w=_watts(self._optional("nvmlDeviceGetEnforcedPowerLimit")),
            default_power_limit_w=_watts(
                self._optional("nvmlDeviceGetPowerManagementDefaultLimit")
            ),
            persistence_mode=_enabled(self._optional("nvmlDeviceGetPersistenceMode")),
            ecc_enabled=_enabled(_current(self._optional("nvmlDeviceGetEccMode"))),
            mig_enabled=_enabled(_current(self._optional("nvmlDeviceGetMigMode"))),
            # Locked clocks (nvidia-smi -lgc / -lmc) have setters but no getter in NVML.
            applications_graphics_clock_mhz=_float(
                self._optional("nvmlDeviceGetApplicationsClock", nvml.NVML_CLOCK_GRAPHICS)
            ),
            applications_memory_clock_mhz=_float(
                self._optional("nvmlDeviceGetApplicationsClock", nvml.NVML_CLOCK_MEM)
            ),
            auto_boost_enabled=_enabled(
                _current(self._optional("nvmlDeviceGetAutoBoostedClocksEnabled"))
            ),
            sm_clock_max_mhz=_float(
                self._optional("nvmlDeviceGetMaxClockInfo", nvml.NVML_CLOCK_SM)),
            mem_clock_max_mhz=_float(
                self._optional("nvmlDeviceGetMaxClockInfo", nvml.NVML_CLOCK_MEM)),
            grace_hopper=self._grace_hopper(),
        )

    def _grace_hopper(self) -> bool | None:
        """Whether the GPU has a C2C link to a Grace CPU (as Zeus detects Grace Hopper).

        None when this pynvml or driver cannot ask; False when the GPU has no C2C link.
        """
        call = getattr(self._nvml, "nvmlDeviceGetC2cModeInfoV", None)
        if call is None:
            return None
        try:
            info = call(self._handle)
        except Exception as e:
            nvml = _import_pynvml()
            if isinstance(e, nvml.NVMLError_NotSupported):
                return False
            if isinstance(e, nvml.NVMLError_FunctionNotFound):
                return None
            raise
        return bool(getattr(info, "isC2cEnabled", False))


def _bus_id(pci: Any) -> str | None:
    if pci is None:
        return None
    bus_id = getattr(pci, "busId", None) or getattr(pci, "busIdLegacy", None)
    return None if bus_id is None else _text(bus_id)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _watts(milliwatts: Any) -> float | None:
    return None if milliwatts is None else milliwatts / 1000.0


def _current(mode_pair: Any) -> Any:
    # ECC and MIG modes come back as [current, pending]; only the current one applies now.
    return None if mode_pair is None else mode_pair[0]


def _enabled(state: Any) -> bool | None:
    # NVML_FEATURE_ENABLED and NVML_DEVICE_MIG_ENABLE are both 1.
    return None if state is None else int(state) == 1


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class NvmlGpuSet(GpuSet):
    """GPUs read through NVML; :meth:`close` shuts NVML down once."""

    def __init__(self, devices: Sequence[GpuDevice], nvml: Any, driver_version: str | None,
                 cuda_version: str | None) -> None:
        super().__init__(devices, driver_version=driver_version, cuda_version=cuda_version)
        self._nvml = nvml
        self._open = True

    def close(self) -> None:
        """Shut NVML down; safe to call twice."""
        if not self._open:
            return
        self._open = False
        try:
            self._nvml.nvmlShutdown()
        except Exception as e:
            if _is_nvml_error(e):
                raise _to_energy_error(e, "shut down") from e
            raise


def discover_gpus(indices: list[int] | None = None, *, nvml: Any = None) -> GpuSet:
    """Initialise NVML and open the GPUs a run measures.

    Args:
        indices: NVML indices to open; None opens every GPU.
        nvml: the ``pynvml`` module or a fake of it; imported when None.

    Returns:
        The GPUs, with driver and CUDA driver versions; the empty set when pynvml, the NVML
        library, the driver or any GPU is missing (absent hardware is not an error).

    Raises:
        PreflightError: an index in ``indices`` names no GPU on this machine.
        EnergyError: NVML failed in any other way.

    """
    lib = _load_nvml(nvml)
    if lib is None:
        return EMPTY_GPUS
    try:
        gpus = _open_gpus(lib, indices)
    except BaseException:
        with contextlib.suppress(Exception):  # keep the original error, not a shutdown one
            lib.nvmlShutdown()
        raise
    if len(gpus) == 0:
        lib.nvmlShutdown()
        return EMPTY_GPUS
    return gpus


def _load_nvml(nvml: Any) -> Any:
    """Initialise NVML; return None when this machine has no usable NVIDIA driver."""
    try:
        lib = _import_pynvml() if nvml is None else nvml
    except ImportError:
        logger.debug("pynvml is not installed: no NVIDIA GPUs")
        return None
    errors = _import_pynvml()
    absent = (errors.NVMLError_LibraryNotFound, errors.NVMLError_DriverNotLoaded)
    try:
        lib.nvmlInit()
    except absent as e:
        logger.debug("NVML unavailable (%s): no NVIDIA GPUs", e)
        return None
    except errors.NVMLError as e:
        raise _to_energy_error(e, "initialise") from e
    return lib


def _open_gpus(lib: Any, indices: list[int] | None) -> GpuSet:
    try:
        count = int(lib.nvmlDeviceGetCount())
        driver_version = _text(lib.nvmlSystemGetDriverVersion())
        cuda_version = _cuda_version(int(lib.nvmlSystemGetCudaDriverVersion()))
    except Exception as e:
        if _is_nvml_error(e):
            raise _to_energy_error(e, "list the GPUs") from e
        raise
    chosen = list(range(count)) if indices is None else indices
    missing = [index for index in chosen if not 0 <= index < count]
    if missing:
        raise PreflightError(
            f"GPU index {missing} not found: this machine has {count} GPU(s), "
            f"indices 0..{count - 1}.",
            fix="Set gpus in the experiment to indices that exist (see nvidia-smi).",
        )
    devices = [NvmlGpu(index, nvml=lib) for index in chosen]
    return NvmlGpuSet(devices, lib, driver_version=driver_version, cuda_version=cuda_version)


def _cuda_version(encoded: int) -> str:
    # NVML encodes the CUDA driver version as 1000 * major + 10 * minor (12040 -> "12.4").
    return f"{encoded // 1000}.{encoded % 1000 // 10}"
