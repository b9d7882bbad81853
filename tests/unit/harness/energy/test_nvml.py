from types import SimpleNamespace

import pynvml
import pytest

from harness.energy import discover_gpus
from harness.energy.device import EMPTY_GPUS
from harness.energy.nvml import (
    NVML_COUNTER_WRAP_J,
    THROTTLE_REASON_BITS,
    NvmlGpu,
    decode_throttle_reasons,
)
from harness.errors import EnergyError, PreflightError

MIB = 1024 * 1024


class FakeNvml:
    """The few pynvml functions the device calls, answering from a table.

    Constants and error classes come from the real pynvml; a function not in the table does
    not exist, as in an older pynvml.
    """

    def __init__(self, count=1, raises=None, **overrides):
        self.shutdowns = 0
        self.raises = raises or {}
        self.responses = {
            "nvmlInit": None,
            "nvmlDeviceGetCount": count,
            "nvmlSystemGetDriverVersion": "550.54.15",
            "nvmlSystemGetCudaDriverVersion": 12040,
            "nvmlDeviceGetHandleByIndex": lambda index: ("handle", index),
            "nvmlDeviceGetTotalEnergyConsumption": 123_456,
            "nvmlDeviceGetPowerUsage": 250_500,
            "nvmlDeviceGetTemperature": 61,
            "nvmlDeviceGetClockInfo": lambda handle, kind: {
                pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619}[kind],
            "nvmlDeviceGetUtilizationRates": SimpleNamespace(gpu=97, memory=40),
            "nvmlDeviceGetMemoryInfo": SimpleNamespace(total=81_559 * MIB, used=10_240 * MIB),
            "nvmlDeviceGetCurrentClocksEventReasons": 0x4 | 0x40,
            "nvmlDeviceGetComputeRunningProcesses": [SimpleNamespace(pid=42)],
            "nvmlDeviceGetName": b"NVIDIA H100 80GB HBM3",
            "nvmlDeviceGetUUID": "GPU-1234",
            "nvmlDeviceGetCudaComputeCapability": (9, 0),
            "nvmlDeviceGetEnforcedPowerLimit": 500_000,
            "nvmlDeviceGetPowerManagementDefaultLimit": 700_000,
            "nvmlDeviceGetPersistenceMode": 0,
            "nvmlDeviceGetEccMode": [1, 1],
            "nvmlDeviceGetMigMode": [0, 0],
            "nvmlDeviceGetApplicationsClock": lambda handle, kind: {
                pynvml.NVML_CLOCK_GRAPHICS: 1755, pynvml.NVML_CLOCK_MEM: 2619}[kind],
            "nvmlDeviceGetAutoBoostedClocksEnabled": [0, 1],
        }
        self.responses.update(overrides)

    def nvmlShutdown(self):
        self.shutdowns += 1

    def __getattr__(self, name):
        if name in self.raises:
            def fail(*args):
                raise pynvml.NVMLError(self.raises[name])
            return fail
        if name in self.responses:
            response = self.responses[name]
            if callable(response):
                return response
            return lambda *args: response
        if name.startswith(("NVML_", "NVMLError")):
            return getattr(pynvml, name)
        raise AttributeError(name)


def test_discover_gpus_on_a_machine_without_nvidia_gpu_returns_the_empty_set():
    gpus = discover_gpus()
    try:
        if len(gpus):
            pytest.skip("this machine has an NVIDIA GPU")
        assert gpus is EMPTY_GPUS
    finally:
        gpus.close()


@pytest.mark.parametrize(
    "code", [pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, pynvml.NVML_ERROR_DRIVER_NOT_LOADED]
)
def test_missing_library_or_driver_means_no_gpus_not_an_error(code):
    assert discover_gpus(nvml=FakeNvml(raises={"nvmlInit": code})) is EMPTY_GPUS


def test_no_device_means_no_gpus_and_nvml_is_shut_down():
    nvml = FakeNvml(count=0)
    assert discover_gpus(nvml=nvml) is EMPTY_GPUS
    assert nvml.shutdowns == 1


def test_other_init_failures_are_translated():
    nvml = FakeNvml(raises={"nvmlInit": pynvml.NVML_ERROR_NO_PERMISSION})
    with pytest.raises(EnergyError) as caught:
        discover_gpus(nvml=nvml)
    assert isinstance(caught.value.__cause__, pynvml.NVMLError)
    assert caught.value.fix is not None


def test_discover_opens_the_selected_indices_and_records_versions():
    nvml = FakeNvml(count=4)
    gpus = discover_gpus([1, 3], nvml=nvml)
    assert [gpu.index for gpu in gpus] == [1, 3]
    assert gpus.driver_version == "550.54.15"
    assert gpus.cuda_version == "12.4"
    gpus.close()
    gpus.close()
    assert nvml.shutdowns == 1


def test_discover_rejects_an_index_that_does_not_exist_and_shuts_nvml_down():
    nvml = FakeNvml(count=2)
    with pytest.raises(PreflightError, match="index"):
        discover_gpus([0, 5], nvml=nvml)
    assert nvml.shutdowns == 1


def test_sample_converts_units():
    gpu = NvmlGpu(0, nvml=FakeNvml())
    sample = gpu.sample(12.5)
    assert sample.t_s == 12.5
    assert sample.power_w == pytest.approx(250.5)
    assert sample.energy_counter_j == pytest.approx(123.456)
    assert sample.temperature_c == 61.0
    assert (sample.sm_clock_mhz, sample.mem_clock_mhz) == (1980.0, 2619.0)
    assert sample.gpu_util_pct == 97.0
    assert sample.mem_used_mb == pytest.approx(10_240.0)
    assert sample.throttle_reasons == ("sw_power_cap", "hw_thermal_slowdown")


def test_counter_not_supported_reads_none():
    nvml = FakeNvml(raises={"nvmlDeviceGetTotalEnergyConsumption":
                            pynvml.NVML_ERROR_NOT_SUPPORTED})
    gpu = NvmlGpu(0, nvml=nvml)
    assert gpu.energy_counter_j() is None
    assert gpu.sample(0.0).energy_counter_j is None


def test_counter_wraps_at_the_64_bit_millijoule_range():
    assert NvmlGpu(0, nvml=FakeNvml()).counter_wrap_j == NVML_COUNTER_WRAP_J == 2**64 / 1000


def test_nvml_errors_are_translated_at_the_boundary():
    nvml = FakeNvml(raises={"nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_GPU_IS_LOST})
    gpu = NvmlGpu(2, nvml=nvml)
    with pytest.raises(EnergyError) as caught:
        gpu.sample(0.0)
    assert isinstance(caught.value.__cause__, pynvml.NVMLError_GpuIsLost)
    assert "GPU 2" in str(caught.value)
    assert "reset" in caught.value.fix


def test_opening_a_missing_handle_is_translated():
    nvml = FakeNvml(raises={"nvmlDeviceGetHandleByIndex": pynvml.NVML_ERROR_INVALID_ARGUMENT})
    with pytest.raises(EnergyError):
        NvmlGpu(7, nvml=nvml)


def test_info_fills_gpu_info_and_leaves_unsupported_fields_none():
    nvml = FakeNvml(raises={"nvmlDeviceGetMigMode": pynvml.NVML_ERROR_NOT_SUPPORTED})
    info = NvmlGpu(0, nvml=nvml).info()
    assert info.name == "NVIDIA H100 80GB HBM3"
    assert info.uuid == "GPU-1234"
    assert info.memory_total_mb == pytest.approx(81_559.0)
    assert info.compute_capability == "9.0"
    assert (info.power_limit_w, info.default_power_limit_w) == (500.0, 700.0)
    assert info.persistence_mode is False
    assert info.ecc_enabled is True
    assert info.mig_enabled is None
    assert (info.applications_graphics_clock_mhz, info.applications_memory_clock_mhz) == (
        1755.0, 2619.0)
    assert info.auto_boost_enabled is False  # [current, default]: the current one


def test_clock_settings_the_gpu_does_not_support_are_none():
    nvml = FakeNvml(raises={
        "nvmlDeviceGetAutoBoostedClocksEnabled": pynvml.NVML_ERROR_NOT_SUPPORTED,
        "nvmlDeviceGetApplicationsClock": pynvml.NVML_ERROR_NOT_SUPPORTED,
    })
    info = NvmlGpu(0, nvml=nvml).info()
    assert info.applications_graphics_clock_mhz is None and info.auto_boost_enabled is None


def test_throttle_reasons_fall_back_to_the_older_function():
    nvml = FakeNvml(nvmlDeviceGetCurrentClocksThrottleReasons=0x8)
    del nvml.responses["nvmlDeviceGetCurrentClocksEventReasons"]
    assert NvmlGpu(0, nvml=nvml).throttle_reasons() == ("hw_slowdown",)


def test_compute_processes_are_pids():
    assert NvmlGpu(0, nvml=FakeNvml()).compute_processes() == [42]


@pytest.mark.parametrize(
    ("mask", "names"),
    [
        (0, ()),
        (0x1, ("gpu_idle",)),
        (0x4 | 0x80, ("sw_power_cap", "hw_power_brake_slowdown")),
        (0x20 | 0x1000, ("sw_thermal_slowdown", "unknown_0x1000")),
    ],
)
def test_decode_throttle_reasons(mask, names):
    assert decode_throttle_reasons(mask) == names


def test_throttle_reason_bits_match_pynvml():
    for bit, name in THROTTLE_REASON_BITS:
        camel = "".join(part.capitalize() for part in name.split("_"))
        assert getattr(pynvml, f"nvmlClocksThrottleReason{camel}") == bit, name


def test_an_empty_selection_opens_nothing_and_shuts_nvml_down():
    nvml = FakeNvml(count=2)
    assert discover_gpus([], nvml=nvml) is EMPTY_GPUS
    assert nvml.shutdowns == 1


@pytest.mark.parametrize("function", ["nvmlDeviceGetUtilizationRates", "nvmlDeviceGetClockInfo",
                                      "nvmlDeviceGetTemperature", "nvmlDeviceGetMemoryInfo",
                                      "nvmlDeviceGetCurrentClocksEventReasons"])
def test_a_transient_error_in_a_secondary_field_keeps_power_and_counter(function):
    # Before: one NVML_ERROR_UNKNOWN reading utilisation dropped the whole sample, power and
    # counter with it.
    gpu = NvmlGpu(0, nvml=FakeNvml(raises={function: pynvml.NVML_ERROR_UNKNOWN}))
    sample = gpu.sample(1.0)
    assert sample.power_w == pytest.approx(250.5)
    assert sample.energy_counter_j == pytest.approx(123.456)
    assert gpu.secondary_read_errors >= 1


def test_an_error_reading_power_still_fails_the_sample():
    gpu = NvmlGpu(0, nvml=FakeNvml(raises={"nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_UNKNOWN}))
    with pytest.raises(EnergyError, match="read power and the energy counter of GPU 0"):
        gpu.sample(1.0)


def test_info_records_max_clocks_and_whether_the_gpu_is_a_grace_hopper_module():
    nvml = FakeNvml(nvmlDeviceGetMaxClockInfo=lambda handle, kind: {
        pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619}[kind],
        nvmlDeviceGetC2cModeInfoV=SimpleNamespace(isC2cEnabled=1))
    info = NvmlGpu(0, nvml=nvml).info()
    assert (info.sm_clock_max_mhz, info.mem_clock_max_mhz) == (1980.0, 2619.0)
    assert info.grace_hopper is True
    plain = FakeNvml(raises={"nvmlDeviceGetC2cModeInfoV": pynvml.NVML_ERROR_NOT_SUPPORTED})
    assert NvmlGpu(0, nvml=plain).info().grace_hopper is False  # no C2C link
    assert NvmlGpu(0, nvml=FakeNvml()).info().grace_hopper is None  # an older pynvml: unknown


def test_a_grace_hopper_module_is_said_in_the_result_warnings():
    from harness.checks import machine_warnings
    from harness.energy import GpuSet
    from harness.testing import FakeClock, FakeGpu

    gh = FakeGpu([(0.0, 300.0)], index=2, clock=FakeClock(),
                 info={"grace_hopper": True, "name": "NVIDIA GH200 480GB"})
    [warning] = [w for w in machine_warnings(GpuSet([gh])) if w.code == "grace_hopper_module"]
    assert warning.message.startswith("GPU 2 (NVIDIA GH200 480GB) is a Grace Hopper module")
