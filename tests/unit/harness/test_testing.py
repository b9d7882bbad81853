import inspect

import pytest

from harness.schema.result import GpuInfo
from harness.testing import FakeClock, FakeGpu, FakePynvml, FakeZeusGpus, Trace, fake_zeus_get_gpus


def test_fake_clock_moves_only_when_advanced():
    clock = FakeClock(start_s=5.0)
    assert clock() == 5.0
    assert clock.advance(1.5) == 6.5
    assert clock() == 6.5
    with pytest.raises(ValueError):
        clock.advance(-1.0)


def test_trace_interpolates_and_holds_its_ends():
    trace = Trace([(1.0, 100.0), (3.0, 300.0)])
    assert trace.at(0.0) == 100.0
    assert trace.at(2.0) == pytest.approx(200.0)
    assert trace.at(10.0) == 300.0


def test_trace_rejects_unordered_times():
    with pytest.raises(ValueError, match="increase"):
        Trace([(0.0, 1.0), (0.0, 2.0)])


def test_counter_is_the_exact_integral_of_a_ramp():
    clock = FakeClock(start_s=100.0)
    gpu = FakeGpu([(0.0, 100.0), (10.0, 300.0)], clock=clock, counter_offset_j=50.0)
    assert gpu.energy_counter_j() == pytest.approx(50.0)
    clock.advance(10.0)
    # trapezoid 10 s x (100 + 300) / 2 W = 2000 J
    assert gpu.energy_counter_j() == pytest.approx(2050.0)
    clock.advance(2.0)  # power held at 300 W after the trace ends
    assert gpu.energy_counter_j() == pytest.approx(2650.0)


def test_counter_integral_splits_segments_exactly():
    clock = FakeClock()
    gpu = FakeGpu([(0.0, 0.0), (2.0, 200.0), (4.0, 0.0)], clock=clock)
    # triangle: half of it up to t=2 s, the part from 1 to 3 s is 3/4 of the area
    assert gpu.counter_at(2.0) == pytest.approx(200.0)
    assert gpu.true_energy_j(1.0, 3.0) == pytest.approx(300.0)
    assert gpu.counter_at(4.0) == pytest.approx(400.0)


def test_counter_wraps_modulo_its_range():
    clock = FakeClock()
    gpu = FakeGpu([(0.0, 100.0)], clock=clock, counter_offset_j=950.0, counter_wrap_j=1000.0)
    assert gpu.counter_wrap_j == 1000.0
    assert gpu.counter_at(0.4) == pytest.approx(990.0)
    assert gpu.counter_at(1.0) == pytest.approx(50.0)


def test_counter_jumps_back_at_the_scripted_time():
    clock = FakeClock()
    gpu = FakeGpu([(0.0, 100.0)], clock=clock, counter_offset_j=10_000.0,
                  backwards_at_s=5.0, backwards_by_j=9_000.0)
    assert gpu.counter_at(4.9) == pytest.approx(10_490.0)
    assert gpu.counter_at(5.0) == pytest.approx(1_500.0)


def test_unsupported_counter_reads_none_but_power_still_works():
    clock = FakeClock()
    gpu = FakeGpu([(0.0, 250.0)], clock=clock, counter_supported=False)
    assert gpu.energy_counter_j() is None
    sample = gpu.sample(clock())
    assert sample.energy_counter_j is None
    assert sample.power_w == 250.0


def test_sample_reads_every_trace_at_its_timestamp():
    clock = FakeClock(start_s=10.0)
    gpu = FakeGpu([(0.0, 100.0), (2.0, 300.0)], index=3, clock=clock,
                  temperature_c=[(0.0, 40.0), (2.0, 60.0)], sm_clock_mhz=1980.0,
                  throttle_reasons=("sw_power_cap",))
    sample = gpu.sample(11.0)
    assert sample.gpu_index == 3
    assert sample.t_s == 11.0
    assert sample.power_w == pytest.approx(200.0)
    assert sample.temperature_c == pytest.approx(50.0)
    assert sample.energy_counter_j == pytest.approx(150.0)
    assert sample.sm_clock_mhz == 1980.0
    assert sample.throttle_reasons == ("sw_power_cap",)


def test_info_overrides_and_processes():
    gpu = FakeGpu([(0.0, 1.0)], index=1, clock=FakeClock(),
                  info={"name": "H100", "mig_enabled": True, "power_limit_w": 500.0},
                  processes=[42, 43])
    info = gpu.info()
    assert isinstance(info, GpuInfo)
    assert (info.index, info.name, info.uuid) == (1, "H100", "GPU-fake-1")
    assert info.mig_enabled is True
    assert info.power_limit_w == 500.0
    assert info.default_power_limit_w == 700.0
    assert gpu.compute_processes() == [42, 43]


def test_info_override_with_unknown_field_is_rejected():
    with pytest.raises(ValueError):
        FakeGpu([(0.0, 1.0)], clock=FakeClock(), info={"nmae": "typo"})


def test_counter_moves_only_at_update_instants_like_nvml():
    clock = FakeClock()
    gpu = FakeGpu([(0.0, 100.0)], clock=clock, counter_update_period_s=0.1)
    # 100 W: 10 J per 100 ms update; between updates the counter holds the last value.
    assert gpu.counter_at(0.05) == pytest.approx(0.0)
    assert gpu.counter_at(0.1) == pytest.approx(10.0)
    assert gpu.counter_at(0.199) == pytest.approx(10.0)
    assert gpu.counter_at(0.25) == pytest.approx(20.0)
    # the true energy is still the continuous integral
    assert gpu.true_energy_j(0.0, 0.25) == pytest.approx(25.0)


def test_counter_update_phase_shifts_the_update_grid():
    clock = FakeClock()
    gpu = FakeGpu([(0.0, 100.0)], clock=clock, counter_update_period_s=0.1,
                  counter_update_phase_s=0.03)
    assert gpu.counter_at(0.12) == pytest.approx(3.0)
    assert gpu.counter_at(0.13) == pytest.approx(13.0)


def test_reported_power_is_a_trailing_average_refreshed_late():
    clock = FakeClock()
    # a 1 s step from 100 W to 500 W at t=2 s
    gpu = FakeGpu([(0.0, 100.0), (2.0, 100.0), (2.0001, 500.0)], clock=clock,
                  power_average_s=1.0, power_update_period_s=0.5)
    assert gpu.reported_power_w(1.9) == pytest.approx(100.0)
    # at 2.4 s the last refresh was at 2.0 s: the average still shows 100 W
    assert gpu.reported_power_w(2.4) == pytest.approx(100.0, abs=0.1)
    # refreshed at 2.5 s: half a second of 500 W in the last second
    assert gpu.reported_power_w(2.5) == pytest.approx(300.0, abs=0.2)
    assert gpu.sample(3.2).power_w == pytest.approx(500.0, abs=0.2)
    assert gpu.power_at(2.4) == pytest.approx(500.0)


def test_update_period_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        FakeGpu([(0.0, 1.0)], clock=FakeClock(), counter_update_period_s=0.0)


def test_fake_pynvml_calls_have_the_real_pynvml_names_and_parameters():
    pynvml = pytest.importorskip("pynvml")
    fake = FakePynvml()
    calls = [name for name in dir(FakePynvml) if name.startswith("nvml")]
    assert "nvmlDeviceGetTotalEnergyConsumption" in calls
    for name in calls:
        real = inspect.signature(getattr(pynvml, name))
        assert list(inspect.signature(getattr(fake, name)).parameters) == list(real.parameters)
    assert fake.NVML_TEMPERATURE_GPU == pynvml.NVML_TEMPERATURE_GPU


def test_fake_pynvml_serves_the_trace_in_nvml_units():
    clock = FakeClock()
    gpu = FakeGpu([(0.0, 250.0), (1e6, 250.0)], clock=clock, counter_offset_j=10.0,
                  counter_update_period_s=0.1, temperature_c=[(0.0, 61.0), (1e6, 61.0)])
    nvml = FakePynvml([gpu])
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlDeviceGetCount() == 1
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(handle) == 10_000  # mJ
    clock.advance(0.15)  # the counter last moved at 0.1 s
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(handle) == 35_000
    assert nvml.nvmlDeviceGetPowerUsage(handle) == 250_000  # mW
    assert nvml.nvmlDeviceGetEnforcedPowerLimit(handle) == 700_000
    assert nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU) == 61
    assert nvml.nvmlDeviceGetUUID(handle) == "GPU-fake-0"
    with pytest.raises(nvml.NVMLError):
        nvml.nvmlDeviceGetHandleByIndex(1)


def test_fake_pynvml_has_no_counter_on_a_gpu_without_one():
    nvml = FakePynvml([FakeGpu([(0.0, 100.0)], clock=FakeClock(), counter_supported=False)])
    with pytest.raises(nvml.NVMLError_NotSupported):
        nvml.nvmlDeviceGetTotalEnergyConsumption(nvml.nvmlDeviceGetHandleByIndex(0))


def test_whole_degree_temperature_is_truncated_like_an_integer_reading():
    clock = FakeClock()
    gpu = FakeGpu([(0.0, 100.0)], clock=clock, temperature_c=[(0.0, 40.0), (10.0, 42.0)],
                  temperature_whole_degrees=True)
    readings = [gpu.sample(t).temperature_c for t in (0.0, 4.9, 5.0, 9.9, 10.0)]
    assert readings == [40.0, 40.0, 41.0, 41.0, 42.0]
    smooth = FakeGpu([(0.0, 100.0)], clock=clock, temperature_c=[(0.0, 40.0), (10.0, 42.0)])
    assert smooth.sample(4.9).temperature_c == pytest.approx(40.98)


def test_fake_zeus_has_the_real_zeus_getter_signatures():
    zeus_common = pytest.importorskip("zeus.device.gpu.common")
    for name in ("supports_get_total_energy_consumption", "get_total_energy_consumption",
                 "get_instant_power_usage"):
        real = inspect.signature(getattr(zeus_common.GPUs, name))
        fake = inspect.signature(getattr(FakeZeusGpus, name))
        assert list(real.parameters) == list(fake.parameters), name


def test_fake_zeus_reads_the_trace_like_zeus_reads_nvml(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # zeus: integer NVML indices
    clock = FakeClock()
    machine = [FakeGpu([(0.0, 100.0), (1.0, 300.0), (1e6, 300.0)], index=i, clock=clock,
                       counter_update_period_s=0.1, power_average_s=1.0) for i in range(2)]
    get_gpus = fake_zeus_get_gpus(machine)
    gpus = get_gpus()
    assert get_gpus() is gpus  # one object per process, as zeus.device.get_gpus
    assert [gpu.gpu_index for gpu in gpus.gpus] == [1] and len(gpus) == 1
    assert gpus.supports_get_total_energy_consumption(0)
    clock.advance(1.05)  # the counter last moved at 1.0 s, after the ramp's 200 J
    assert gpus.get_total_energy_consumption(0) == 200_000  # integer mJ
    # instantaneous power (NVML_FI_DEV_POWER_INSTANT), not the 1 s average
    assert gpus.get_instant_power_usage(0) == 300_000  # integer mW
    assert machine[1].reported_power_w(clock()) < 300.0


def test_fake_zeus_refuses_uuids_in_cuda_visible_devices_like_zeus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-fake-0")
    with pytest.raises(ValueError, match="invalid literal"):
        fake_zeus_get_gpus([FakeGpu([(0.0, 1.0)], clock=FakeClock())])()
