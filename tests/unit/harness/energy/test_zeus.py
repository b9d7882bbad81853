"""Zeus behind the device interface, against ``harness.testing.FakeZeusGpus``, which behaves
like Zeus 0.16's ``get_gpus`` (one collection per process, built from ``CUDA_VISIBLE_DEVICES``
read as integer NVML indices; getters by position; integer mW and mJ)."""

from __future__ import annotations

import inspect
import os

import pytest

from harness.energy import EnergyMeter, GpuSet, PowerSampler
from harness.energy.selection import select
from harness.energy.zeus import discover_zeus_gpus
from harness.errors import EnergyError, PreflightError
from harness.testing import FakeClock, FakeGpu, FakeZeusGpus, fake_zeus_get_gpus


class BrokenZeusGpus(FakeZeusGpus):
    """A Zeus collection whose power read fails, as when the driver went away."""

    def get_instant_power_usage(self, gpu_index: int) -> int:
        raise RuntimeError("driver gone")


def machine(clock: FakeClock, powers_w=(450.0, 70.0, 70.0, 70.0), **info) -> GpuSet:
    return GpuSet([FakeGpu([(0.0, power)], index=i, clock=clock, info=info)
                   for i, power in enumerate(powers_w)])


def test_zeus_reads_the_measured_gpus_not_zeus_index_0(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-fake-2")  # a runner restricted us by UUID
    clock = FakeClock()
    whole = machine(clock, powers_w=(70.0, 70.0, 450.0, 70.0))
    measured = select(whole, needed=1).gpus
    gpus = discover_zeus_gpus(measured, get_gpus=fake_zeus_get_gpus(list(whole)))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-fake-2"  # restored for CUDA
    sampler = PowerSampler(gpus, 100, clock=clock)
    meter = EnergyMeter(gpus, sampler)
    start = meter.mark()
    for _ in range(20):
        clock.advance(0.5)
        sampler.sample_now()
    reading = meter.between(start, meter.mark())
    assert reading.energy_j == pytest.approx(450.0 * 10.0)  # the busy GPU's known energy
    assert reading.method == "zeus_counter"
    # facts come from NVML for the same GPU: its real UUID, not a made-up one
    assert gpus[0].info().uuid == "GPU-fake-2" and gpus[0].index == 2


def test_zeus_that_opened_other_gpus_earlier_is_refused(monkeypatch):
    clock = FakeClock()
    whole = machine(clock)
    get_gpus = fake_zeus_get_gpus(list(whole))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    get_gpus()  # something in this process called zeus first, seeing GPU 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-fake-1")
    with pytest.raises(PreflightError, match=r"Zeus opened NVML GPUs \[0\].*measures \[1\]"):
        discover_zeus_gpus(select(whole, needed=1).gpus, get_gpus=get_gpus)


def test_zeus_errors_become_energy_errors(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    clock = FakeClock()
    whole = machine(clock, powers_w=(100.0,))
    broken = BrokenZeusGpus(list(whole))
    gpus = discover_zeus_gpus(select(whole, needed=1).gpus, get_gpus=lambda: broken)
    with pytest.raises(EnergyError, match="zeus failed: RuntimeError: driver gone"):
        gpus[0].sample(0.0)


def test_real_zeus_reads_cuda_visible_devices_as_integer_nvml_indices():
    nvidia = pytest.importorskip("zeus.device.gpu.nvidia")
    source = inspect.getsource(nvidia.NVIDIAGPUs._init_gpus)
    # what discover_zeus_gpus relies on: integer indices from the variable, opened by index
    assert 'os.environ.get("CUDA_VISIBLE_DEVICES")' in source
    assert "int(idx)" in source
    assert "nvmlDeviceGetHandleByIndex" in inspect.getsource(nvidia.NVIDIAGPU._get_handle)
