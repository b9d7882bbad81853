"""Zeus behind the device interface, against a fake that behaves like Zeus's ``get_gpus``.

Like Zeus 0.16 (``zeus/device/gpu/nvidia.py``): ``get_gpus()`` builds its GPU list once per
process from ``CUDA_VISIBLE_DEVICES`` read as integer NVML indices (every GPU when unset), and
every later call returns that same object; each getter takes the position in that list; power
is in mW and energy in mJ, as integers.
"""

from __future__ import annotations

import inspect
import os

import pytest

from harness.energy import EnergyMeter, GpuSet, PowerSampler
from harness.energy.selection import select
from harness.energy.zeus import discover_zeus_gpus
from harness.errors import EnergyError, PreflightError
from harness.testing import FakeClock, FakeGpu


class FakeZeusGpu:
    def __init__(self, gpu_index: int) -> None:
        self.gpu_index = gpu_index  # the NVML index, as zeus's NVIDIAGPU keeps it


class FakeZeusGPUs:
    """Mirrors zeus.device.gpu.common.GPUs over a machine of FakeGpus."""

    def __init__(self, machine: GpuSet) -> None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        indices = ([int(i) for i in visible.split(",")] if visible is not None
                   else list(range(len(machine))))  # zeus: int() of each token, no UUIDs
        self._machine = machine
        self.gpus = [FakeZeusGpu(index) for index in indices]

    def __len__(self) -> int:
        return len(self.gpus)

    def _gpu(self, gpu_index: int) -> FakeGpu:
        gpu = self._machine[self.gpus[gpu_index].gpu_index]
        assert isinstance(gpu, FakeGpu)
        return gpu

    def get_name(self, gpu_index: int) -> str:
        return "NVIDIA H100"

    def supports_get_total_energy_consumption(self, gpu_index: int) -> bool:
        return True

    def get_total_energy_consumption(self, gpu_index: int) -> int:
        counter_j = self._gpu(gpu_index).energy_counter_j()
        assert counter_j is not None
        return int(counter_j * 1000)

    def get_instant_power_usage(self, gpu_index: int) -> int:
        gpu = self._gpu(gpu_index)
        if gpu.info().name == "broken":
            raise RuntimeError("driver gone")
        return int(gpu.power_at(gpu._clock()) * 1000)

    def get_gpu_temperature(self, gpu_index: int) -> int:
        return 61


def zeus_singleton(machine: GpuSet):
    made: list[FakeZeusGPUs] = []

    def get_gpus() -> FakeZeusGPUs:
        if not made:
            made.append(FakeZeusGPUs(machine))
        return made[0]

    return get_gpus


def machine(clock: FakeClock, powers_w=(450.0, 70.0, 70.0, 70.0), **info) -> GpuSet:
    return GpuSet([FakeGpu([(0.0, power)], index=i, clock=clock, info=info)
                   for i, power in enumerate(powers_w)])


def test_zeus_reads_the_measured_gpus_not_zeus_index_0(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-fake-2")  # a runner restricted us by UUID
    clock = FakeClock()
    whole = machine(clock, powers_w=(70.0, 70.0, 450.0, 70.0))
    measured = select(whole, needed=1).gpus
    gpus = discover_zeus_gpus(measured, get_gpus=zeus_singleton(whole))
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
    get_gpus = zeus_singleton(whole)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    get_gpus()  # something in this process called zeus first, seeing GPU 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-fake-1")
    with pytest.raises(PreflightError, match=r"Zeus opened NVML GPUs \[0\].*measures \[1\]"):
        discover_zeus_gpus(select(whole, needed=1).gpus, get_gpus=get_gpus)


def test_zeus_errors_become_energy_errors(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    clock = FakeClock()
    whole = machine(clock, powers_w=(100.0,), name="broken")
    gpus = discover_zeus_gpus(select(whole, needed=1).gpus, get_gpus=zeus_singleton(whole))
    with pytest.raises(EnergyError, match="zeus failed: RuntimeError: driver gone"):
        gpus[0].sample(0.0)


def test_fake_mirrors_the_zeus_signatures_we_call():
    zeus_common = pytest.importorskip("zeus.device.gpu.common")
    for name in ("supports_get_total_energy_consumption", "get_total_energy_consumption",
                 "get_instant_power_usage"):
        real = inspect.signature(getattr(zeus_common.GPUs, name))
        fake = inspect.signature(getattr(FakeZeusGPUs, name))
        assert list(real.parameters) == list(fake.parameters), name


def test_real_zeus_reads_cuda_visible_devices_as_integer_nvml_indices():
    nvidia = pytest.importorskip("zeus.device.gpu.nvidia")
    source = inspect.getsource(nvidia.NVIDIAGPUs._init_gpus)
    # what discover_zeus_gpus relies on: integer indices from the variable, opened by index
    assert 'os.environ.get("CUDA_VISIBLE_DEVICES")' in source
    assert "int(idx)" in source
    assert "nvmlDeviceGetHandleByIndex" in inspect.getsource(nvidia.NVIDIAGPU._get_handle)
