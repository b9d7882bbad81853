"""Zeus behind the device interface, against a fake of the exact Zeus ``GPUs`` methods used."""

from __future__ import annotations

import inspect

import pytest

from harness.energy import EnergyMeter, GpuSet, PowerSampler
from harness.energy.zeus import ZeusGpu
from harness.errors import EnergyError
from harness.testing import FakeClock


class FakeZeusGPUs:
    """Mirrors zeus.device.gpu.common.GPUs: per-index getters, power in mW, energy in mJ."""

    def __init__(self, clock: FakeClock, power_mw: int = 250_000) -> None:
        self.clock, self.power_mw = clock, power_mw

    def __len__(self) -> int:
        return 1

    def get_name(self, gpu_index: int) -> str:
        return "NVIDIA H100"

    def get_power_management_limit(self, gpu_index: int) -> int:
        return 700_000

    def get_persistence_mode(self, gpu_index: int) -> bool:
        return True

    def supports_get_total_energy_consumption(self, gpu_index: int) -> bool:
        return True

    def get_total_energy_consumption(self, gpu_index: int) -> int:
        return int(self.power_mw * self.clock())  # mW x s = mJ

    def get_instant_power_usage(self, gpu_index: int) -> int:
        if self.power_mw < 0:
            raise RuntimeError("driver gone")
        return self.power_mw

    def get_gpu_temperature(self, gpu_index: int) -> int:
        return 61


def test_zeus_counter_gives_window_energy_with_zeus_method():
    clock = FakeClock()
    gpus = GpuSet([ZeusGpu(FakeZeusGPUs(clock), 0)], source="zeus")
    sampler = PowerSampler(gpus, 100, clock=clock)
    meter = EnergyMeter(gpus, sampler)
    start = meter.mark()
    for _ in range(20):
        clock.advance(0.5)
        sampler.sample_now()
    reading = meter.between(start, meter.mark())
    assert reading.energy_j == pytest.approx(250.0 * 10.0)
    assert reading.method == "zeus_counter"
    info = gpus[0].info()
    assert info.power_limit_w == 700.0 and info.name == "NVIDIA H100"


def test_zeus_errors_become_energy_errors():
    clock = FakeClock()
    gpu = ZeusGpu(FakeZeusGPUs(clock, power_mw=-1), 0)
    with pytest.raises(EnergyError, match="zeus failed: RuntimeError: driver gone"):
        gpu.sample(0.0)


def test_fake_mirrors_the_zeus_signatures_we_call():
    zeus_common = pytest.importorskip("zeus.device.gpu.common")
    for name in ("get_name", "get_power_management_limit", "get_persistence_mode",
                 "supports_get_total_energy_consumption", "get_total_energy_consumption",
                 "get_instant_power_usage", "get_gpu_temperature"):
        real = inspect.signature(getattr(zeus_common.GPUs, name))
        fake = inspect.signature(getattr(FakeZeusGPUs, name))
        assert list(real.parameters) == list(fake.parameters), name
