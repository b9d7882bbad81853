"""CodeCarbon as an alternative energy source, behind the same device interface as NVML.

``energy.backend: codecarbon`` measures each GPU's energy through CodeCarbon's public task API:
one ``OfflineEmissionsTracker`` per GPU (``gpu_ids=[index]``), and every reading of the
counter closes the running task (``stop_task()``, whose ``gpu_energy`` is the energy in kWh
since the task started) and opens the next (``start_task()``). The running sum of those task
energies is a per-GPU energy counter, so windows, the baseline and the prefill/decode split
work exactly as with NVML; power is the ``gpu_power`` CodeCarbon reports with each task.
Methods are recorded as ``codecarbon_counter`` / ``codecarbon_power_integration``.

CodeCarbon exposes no temperature, clocks, throttling or device facts, so those (needed for
warmup stability, thermal drift and the environment snapshot) come from NVML directly; the
energy figures come from CodeCarbon alone. CodeCarbon's own GPU reading is NVML's energy
counter, so on one GPU the two sources should agree; each read also makes CodeCarbon measure
CPU and RAM (which llem ignores), so a read costs more than an NVML read (about 0.4 ms,
``tests/perf/bench_codecarbon_read.py``). Emissions (CO2) are not reported: the tracker runs
offline with a fixed country only because CodeCarbon requires one.

CodeCarbon is an extra (``pip install 'llem[codecarbon]'``) and is imported only here, only when
chosen.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from harness.energy.device import GpuDevice, GpuSample, GpuSet
from harness.errors import EnergyError, PreflightError
from harness.schema.result import GpuInfo

J_PER_KWH = 3.6e6
TASK_NAME = "llem"

TrackerFactory = Callable[[int], Any]
"""Makes the tracker of one GPU from its NVML index (a fake in tests)."""


def codecarbon_tracker(index: int) -> Any:
    """An offline CodeCarbon tracker of one GPU that writes no file and sends nothing."""
    try:
        from codecarbon import OfflineEmissionsTracker
    except ImportError as error:
        raise PreflightError("energy.backend is 'codecarbon' but codecarbon is not installed",
                             fix=("pip install 'llem[codecarbon]'; in a container, rebuild its "
                                  "image: llem images build BACKEND --extras codecarbon (or choose "
                                  "energy.backend: nvml)")
                             ) from error
    return OfflineEmissionsTracker(
        project_name="llem",
        gpu_ids=[index],
        tracking_mode="machine",
        save_to_file=False,
        log_level="error",
        allow_multiple_runs=True,
        country_iso_code="USA",
    )


class CodeCarbonGpu(GpuDevice):
    """One GPU whose energy and power are read through a CodeCarbon tracker.

    Args:
        tracker: the GPU's own tracker (``gpu_ids=[index]``), not started.
        facts: the same GPU through NVML, for everything CodeCarbon does not expose.

    """

    def __init__(self, tracker: Any, facts: GpuDevice) -> None:
        self.index = facts.index
        self._tracker = tracker
        self._facts = facts
        self._lock = threading.Lock()  # the sampler thread and the meter both read
        self._total_j = 0.0
        self._power_w: float | None = None
        self._running = False

    def info(self) -> GpuInfo:
        """Static facts from NVML (CodeCarbon has none to give)."""
        return self._facts.info()

    def energy_counter_j(self) -> float:
        """Energy since the first read (J): the sum of CodeCarbon's task energies."""
        with self._lock:
            return self._read()

    def _read(self) -> float:
        try:
            if self._running:
                data = self._tracker.stop_task(TASK_NAME)
                self._running = False
                if data is None:
                    raise EnergyError("codecarbon returned no data for its task")
                energy_j = float(data.gpu_energy) * J_PER_KWH
                if energy_j < 0:
                    raise EnergyError(f"codecarbon reported negative GPU energy ({energy_j} J)")
                self._total_j += energy_j
                self._power_w = float(data.gpu_power)
            self._tracker.start_task(TASK_NAME)
            self._running = True
        except EnergyError:
            raise
        except Exception as error:
            raise EnergyError(f"codecarbon failed: {type(error).__name__}: {error}") from error
        return self._total_j

    def sample(self, t_s: float) -> GpuSample:
        """CodeCarbon's energy and power; temperature, clocks and throttling from NVML."""
        with self._lock:
            counter_j = self._read()
            power_w = self._power_w
        facts = self._facts.sample(t_s)
        return GpuSample(
            gpu_index=self.index,
            t_s=t_s,
            power_w=power_w,
            energy_counter_j=counter_j,
            temperature_c=facts.temperature_c,
            sm_clock_mhz=facts.sm_clock_mhz,
            mem_clock_mhz=facts.mem_clock_mhz,
            gpu_util_pct=facts.gpu_util_pct,
            mem_used_mb=facts.mem_used_mb,
            throttle_reasons=facts.throttle_reasons,
        )

    def compute_processes(self) -> list[int]:
        """Compute processes as NVML lists them."""
        return self._facts.compute_processes()

    def stop(self) -> None:
        """Close the running task so the tracker leaves nothing behind."""
        with self._lock:
            if self._running:
                self._running = False
                with contextlib.suppress(Exception):  # closing; the figures are already taken
                    self._tracker.stop_task(TASK_NAME)


class CodeCarbonGpuSet(GpuSet):
    """CodeCarbon-read GPUs over the NVML set that supplies their facts; closes both."""

    def __init__(self, devices: list[CodeCarbonGpu], facts: GpuSet) -> None:
        super().__init__(devices, facts.driver_version, facts.cuda_version, source="codecarbon")
        self._codecarbon = devices
        self._facts = facts

    def close(self) -> None:
        """Stop every tracker's task, then release NVML."""
        for device in self._codecarbon:
            device.stop()
        self._facts.close()


def discover_codecarbon_gpus(facts: GpuSet,
                             tracker_factory: TrackerFactory = codecarbon_tracker) -> GpuSet:
    """Wrap the NVML GPUs of a run so their energy is read through CodeCarbon.

    Args:
        facts: the run's GPUs through NVML (empty on a machine without NVIDIA GPUs).
        tracker_factory: makes one GPU's tracker from its index.

    Returns:
        The CodeCarbon-read set, or ``facts`` itself when it is empty (nothing to measure).

    Raises:
        PreflightError: codecarbon is not installed.
        EnergyError: CodeCarbon failed to create a tracker.

    """
    if len(facts) == 0:
        return facts
    try:
        devices = [CodeCarbonGpu(tracker_factory(gpu.index), gpu) for gpu in facts]
    except PreflightError:
        raise
    except Exception as error:
        raise EnergyError(f"codecarbon failed: {type(error).__name__}: {error}") from error
    return CodeCarbonGpuSet(devices, facts)
