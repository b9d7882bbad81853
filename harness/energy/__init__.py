"""Energy measurement: GPUs behind one small device interface, a sampler and a meter.

``discover_gpus`` opens the NVIDIA GPUs through NVML (the empty set where there are none);
:class:`PowerSampler` samples them into the time series; :class:`EnergyMeter` turns the
energy counters into the energy of a window. :class:`HostEnergyMeter` reads the host's own
CPU package and DRAM energy from RAPL (:mod:`harness.energy.rapl`), beside the GPUs'.
"""

from harness.energy.device import EMPTY_GPUS, GpuDevice, GpuSample, GpuSet
from harness.energy.meter import EnergyMeter, EnergyReading, Mark
from harness.energy.nvml import NvmlGpu, decode_throttle_reasons, discover_gpus
from harness.energy.rapl import HostEnergyMeter
from harness.energy.sampler import PowerSampler, SampleBatch, SamplerError

__all__ = [
    "EMPTY_GPUS",
    "EnergyMeter",
    "EnergyReading",
    "GpuDevice",
    "GpuSample",
    "GpuSet",
    "HostEnergyMeter",
    "Mark",
    "NvmlGpu",
    "PowerSampler",
    "SampleBatch",
    "SamplerError",
    "decode_throttle_reasons",
    "discover_gpus",
]
