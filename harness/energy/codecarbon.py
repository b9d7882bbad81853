"""CodeCarbon as an alternative energy source, behind the same device interface as NVML.

``energy.backend: codecarbon`` measures each GPU's energy through CodeCarbon's public task API:
one ``OfflineEmissionsTracker`` per GPU (``gpu_ids=[index]``) and one task per span between two
counter reads. The meter reads the counter only at window edges (its marks), so each window is
exactly one task: ``stop_task()`` at the window's end returns ``gpu_energy``, the GPU energy in
kWh since ``start_task()`` at its start. The sampler never touches the tracker (closing a task
per sample lost the energy between one task's end and the next one's start: a few percent at
100 ms).
The running sum of task energies is a per-GPU counter; methods are recorded as
``codecarbon_counter``.

What CodeCarbon would otherwise get wrong, and what llem does about it (codecarbon 3.3.2):

- settings that change the energy (``pue`` multiplies it, ``gpu_ids`` picks the GPU, a lock
  held by another process makes a tracker measure nothing) can come from a
  ``.codecarbon.config`` file or ``CODECARBON_*`` variables: every one is pinned here
  (:func:`tracker_settings`), so none of them is read from outside;
- the task's ``gpu_power`` is a mean over every measurement since the tracker was made, not
  the power of the task, so power, temperature and clocks in the time series come from NVML;
- a counter that goes backwards (driver reload) is silently replaced by power x time: llem
  reads NVML's counter around each task and, when it went backwards, makes the CodeCarbon
  counter go backwards too, so the meter's own check refuses every window that spans it;
- CodeCarbon finds NVIDIA GPUs only where ``nvidia-smi`` runs, and otherwise reports 0 J:
  a tracker that did not find the GPU it should measure is a preflight error, and what it found
  is recorded in the result (``energy.source_gpus``).

A window's energy is read at its edges only, so energies at instants inside a window (the
prefill/decode split) are not available from this source. Emissions (CO2) are not reported.
CodeCarbon is an extra (``pip install 'llem[codecarbon]'``) and is imported only here, only when
chosen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from harness.energy.device import GpuDevice, GpuSample, GpuSet
from harness.errors import EnergyError, PreflightError
from harness.schema.result import GpuInfo, SourceGpu

KWH_PER_J = 2.77778e-7
"""CodeCarbon's own joules-to-kWh factor (``Energy.JOULES_TO_KWH``), 0.8 ppm above 1/3.6e6:
dividing its kWh by this gives back the joules of NVML's counter exactly."""
TASK_PREFIX = "llem"

TrackerFactory = Callable[[int], Any]
"""Makes the tracker of one GPU from its NVML index (a fake in tests)."""

NO_GPU_FIX = (
    "CodeCarbon looks for NVIDIA GPUs by running nvidia-smi and reads them through pynvml: make "
    "both available where the run executes (in a container, the NVIDIA container toolkit's "
    "'utility' capability: NVIDIA_DRIVER_CAPABILITIES=compute,utility), or choose "
    "energy.backend: nvml"
)


def tracker_settings(index: int) -> dict[str, Any]:
    """Every setting llem pins for the CodeCarbon tracker of the GPU at NVML index ``index``.

    A setting not passed here would be read from ``.codecarbon.config`` or ``CODECARBON_*``.
    """
    return {
        "project_name": TASK_PREFIX,
        "gpu_ids": [index],  # the GPU llem measures, not CUDA_VISIBLE_DEVICES or a config
        "pue": 1.0,  # a data-centre PUE would multiply the GPU energy
        "tracking_mode": "machine",
        "allow_multiple_runs": True,  # else another tracker's lock makes this one measure nothing
        "output_methods": [],  # no file, no API, whatever a config asks
        "output_handlers": [],
        "emissions_endpoint": None,
        "output_dir": ".",  # a configured folder that does not exist would break the tracker
        "force_carbon_intensity_g_co2e_kwh": 0.0,  # CO2 is not reported: never ask a network
        "country_iso_code": "USA",  # an offline tracker requires one
        "log_level": "error",
    }


def codecarbon_tracker(index: int, tracker_class: Any = None) -> Any:
    """An offline CodeCarbon tracker of one GPU with every setting pinned.

    Args:
        index: the GPU's NVML index.
        tracker_class: called with :func:`tracker_settings` (a fake in tests); CodeCarbon's
            ``OfflineEmissionsTracker`` by default.

    Raises:
        PreflightError: codecarbon is not installed.

    """
    if tracker_class is None:
        try:
            from codecarbon import OfflineEmissionsTracker
        except ImportError as error:
            raise PreflightError(
                "energy.backend is 'codecarbon' but codecarbon is not installed",
                fix=("pip install 'llem[codecarbon]'; in a container, rebuild its image: llem "
                     "images build BACKEND --extras codecarbon (or choose energy.backend: nvml)"),
            ) from error
        tracker_class = OfflineEmissionsTracker
    return tracker_class(**tracker_settings(index))


def _went_back_j(before_j: float | None, after_j: float | None) -> float:
    """How far NVML's counter went backwards between two reads (J; 0 when it did not)."""
    if before_j is None or after_j is None or after_j >= before_j:
        return 0.0
    return before_j - after_j


class CodeCarbonGpu(GpuDevice):
    """One GPU whose energy is read through a CodeCarbon tracker, one task per read span.

    Args:
        tracker: the GPU's own tracker (``gpu_ids=[index]``), with no task running.
        facts: the same GPU through NVML, for power, temperature, clocks and device facts.
        found: what the tracker found for this GPU (checked before the run).

    """

    def __init__(self, tracker: Any, facts: GpuDevice, found: SourceGpu) -> None:
        self.index = facts.index
        self.found = found
        self._tracker = tracker
        self._facts = facts
        self._lock = threading.Lock()  # two marks never interleave their tasks
        self._total_j = 0.0
        self._task: str | None = None
        self._tasks_opened = 0
        self._nvml_at_start_j: float | None = None

    def info(self) -> GpuInfo:
        """Static facts from NVML (CodeCarbon has none to give)."""
        return self._facts.info()

    def energy_counter_j(self) -> float:
        """Energy since the first read (J): closes the running task and opens the next.

        Call it at window edges only (the meter's marks): each call ends a task, and the
        energy between one task's end and the next one's start is lost.
        """
        with self._lock:
            if self._task is not None:
                self._close_task(self._task)
            self._open_task()
            return self._total_j

    def _open_task(self) -> None:
        # NVML's counter just before the task, to see whether it goes backwards inside it.
        self._nvml_at_start_j = self._facts.energy_counter_j()
        name = f"{TASK_PREFIX}-{self._tasks_opened}"  # unique, so CodeCarbon keeps it as is
        _call(self._tracker.start_task, name)
        self._task = name
        self._tasks_opened += 1

    def _close_task(self, name: str) -> None:
        self._task = None
        data = _call(self._tracker.stop_task, name)
        went_back_j = _went_back_j(self._nvml_at_start_j, self._facts.energy_counter_j())
        if data is None:
            raise EnergyError(f"codecarbon returned no data for GPU {self.index}'s task")
        energy_j = float(data.gpu_energy) / KWH_PER_J
        if energy_j < 0:
            raise EnergyError(f"codecarbon reported negative energy for GPU {self.index} "
                              f"({energy_j} J)")
        if went_back_j > 0:
            # CodeCarbon reported power x time for this task; follow NVML's counter backwards
            # instead, so that every window spanning the task is refused by the meter.
            self._total_j -= went_back_j
        else:
            self._total_j += energy_j

    def sample(self, t_s: float) -> GpuSample:
        """Power, temperature, clocks and throttling from NVML; no counter between edges."""
        facts = self._facts.sample(t_s)
        return dataclasses.replace(facts, gpu_index=self.index, energy_counter_j=None)

    def compute_processes(self) -> list[int]:
        """Compute processes as NVML lists them."""
        return self._facts.compute_processes()

    def stop(self) -> None:
        """Close the running task so the tracker leaves nothing behind."""
        with self._lock:
            name, self._task = self._task, None
            if name is not None:
                with contextlib.suppress(Exception):  # closing; the figures are already taken
                    self._tracker.stop_task(name)


def _call(method: Callable[[str], Any], task: str) -> Any:
    """Call a tracker's task method, turning any failure into an EnergyError."""
    try:
        return method(task)
    except Exception as error:
        raise EnergyError(f"codecarbon failed: {type(error).__name__}: {error}") from error


class CodeCarbonGpuSet(GpuSet):
    """CodeCarbon-read GPUs over the NVML set that supplies their facts; closes both."""

    def __init__(self, devices: list[CodeCarbonGpu], facts: GpuSet) -> None:
        super().__init__(devices, facts.driver_version, facts.cuda_version, source="codecarbon")
        self._codecarbon = devices
        self._facts = facts

    @property
    def found(self) -> list[SourceGpu]:
        """What each GPU's tracker found, in GPU order."""
        return [device.found for device in self._codecarbon]

    def close(self) -> None:
        """Stop every tracker's task, then release NVML."""
        for device in self._codecarbon:
            device.stop()
        self._facts.close()


def check_found(tracker: Any, gpu: GpuDevice) -> SourceGpu:
    """What ``tracker`` found for ``gpu``; an error when it would not measure that GPU.

    Raises:
        PreflightError: CodeCarbon found no GPU, fewer GPUs than the index, or none of the
            model llem measures.

    """
    hardware = tracker.get_detected_hardware()
    model = str(hardware.get("gpu_model") or "")
    name = gpu.info().name
    if not model:
        raise PreflightError(
            f"CodeCarbon found no GPU, so it would report 0 J for GPU {gpu.index}", fix=NO_GPU_FIX)
    count = int(hardware.get("gpu_count") or 0)
    if gpu.index >= count or name not in model:
        raise PreflightError(
            f"CodeCarbon found {model!r} ({count} GPU(s)), which does not include GPU "
            f"{gpu.index} ({name}) that llem measures",
            fix="CodeCarbon must see the same NVML GPUs as llem: run both with the same driver "
            "and pynvml, or choose energy.backend: nvml")
    return SourceGpu(gpu_index=gpu.index, tracked_gpu_id=gpu.index, gpus_found=model,
                     gpu_count_found=count)


def _open_gpu(gpu: GpuDevice, tracker_factory: TrackerFactory) -> CodeCarbonGpu:
    if gpu.energy_counter_j() is None:
        raise PreflightError(
            f"GPU {gpu.index} has no energy counter: CodeCarbon would estimate its energy from "
            "power read once a second", fix="choose energy.backend: nvml, which integrates "
            "power sampled every energy.sample_interval_ms")
    tracker = tracker_factory(gpu.index)
    found = check_found(tracker, gpu)
    # One task now does CodeCarbon's slow first-use setup (about 0.2 s), so that the first
    # window edge is read as fast as every later one.
    _call(tracker.start_task, f"{TASK_PREFIX}-setup")
    if _call(tracker.stop_task, f"{TASK_PREFIX}-setup") is None:
        raise EnergyError(f"codecarbon's tracker of GPU {gpu.index} returned no data for a task")
    return CodeCarbonGpu(tracker, gpu, found)


def discover_codecarbon_gpus(facts: GpuSet,
                             tracker_factory: TrackerFactory = codecarbon_tracker) -> GpuSet:
    """Wrap the NVML GPUs of a run so their energy is read through CodeCarbon.

    Args:
        facts: the run's GPUs through NVML (empty on a machine without NVIDIA GPUs).
        tracker_factory: makes one GPU's tracker from its index.

    Returns:
        The CodeCarbon-read set, or ``facts`` itself when it is empty (nothing to measure).

    Raises:
        PreflightError: codecarbon is not installed, a GPU has no energy counter, or a tracker
            did not find its GPU.
        EnergyError: CodeCarbon failed to create or set up a tracker.

    """
    if len(facts) == 0:
        return facts
    try:
        devices = [_open_gpu(gpu, tracker_factory) for gpu in facts]
    except (PreflightError, EnergyError):
        raise
    except Exception as error:
        raise EnergyError(f"codecarbon failed: {type(error).__name__}: {error}") from error
    return CodeCarbonGpuSet(devices, facts)
