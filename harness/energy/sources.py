"""The one place that picks a run's energy source: NVML, Zeus, CodeCarbon or none.

Every source reads the same GPUs: the ones the run measures, chosen beforehand through NVML
(:mod:`harness.energy.selection`). Zeus and CodeCarbon only replace where the energy (and
power) comes from; device facts, temperature, clocks and processes stay NVML's, so every check
works the same whichever source is chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.energy.codecarbon import TrackerFactory, discover_codecarbon_gpus
from harness.energy.device import EMPTY_GPUS, GpuSet
from harness.energy.zeus import discover_zeus_gpus
from harness.errors import LlemError

NO_GPU = {
    "nvml": "energy.backend is 'nvml' but NVML found no NVIDIA GPU",
    "zeus": "energy.backend is 'zeus' but NVML found no NVIDIA GPU (Zeus reads NVIDIA GPUs "
    "through NVML)",
    "codecarbon": "energy.backend is 'codecarbon' but NVML found no NVIDIA GPU (CodeCarbon "
    "reads GPU energy through NVML)",
}


def open_energy_source(source: str, measured: GpuSet, tracker_factory: TrackerFactory,
                       zeus_get_gpus: Callable[[], Any] | None = None,
                       ) -> tuple[GpuSet, list[str]]:
    """The measured GPUs read through ``source``, or the problems that prevent it.

    Args:
        source: ``energy.backend`` (auto, nvml, zeus, codecarbon, none).
        measured: the run's measured GPUs through NVML (possibly empty).
        tracker_factory: makes a GPU's CodeCarbon tracker (a fake in tests).
        zeus_get_gpus: ``zeus.device.get_gpus`` (imported when None; a fake in tests and in
            the CPU mode of ``make device-check``).

    Returns:
        (the GPUs to read energy from, problems); the empty set for ``none`` and for ``auto``
        without GPUs.

    """
    if source == "none":
        return EMPTY_GPUS, []
    if len(measured) == 0:
        return EMPTY_GPUS, [NO_GPU[source]] if source in NO_GPU else []
    try:
        if source == "zeus":
            return discover_zeus_gpus(measured, zeus_get_gpus), []
        if source == "codecarbon":
            return discover_codecarbon_gpus(measured, tracker_factory), []
    except LlemError as error:
        return EMPTY_GPUS, [str(error)]
    return measured, []
