"""CodeCarbon behind the device interface, against a fake of the exact tracker surface used."""

from __future__ import annotations

import dataclasses
import inspect
import sys

import pytest

from harness.energy import EnergyMeter, GpuSet, PowerSampler
from harness.energy.codecarbon import (
    J_PER_KWH,
    CodeCarbonGpu,
    codecarbon_tracker,
    discover_codecarbon_gpus,
)
from harness.errors import EnergyError, PreflightError
from harness.runner import ExperimentRun
from harness.schema import ExperimentConfig
from harness.schema.run_spec import RunSpec
from harness.testing import FakeClock, FakeGpu


@dataclasses.dataclass
class FakeEmissionsData:
    """The two fields of codecarbon.output_methods.emissions_data.EmissionsData read."""

    gpu_energy: float  # kWh
    gpu_power: float  # W


class FakeOfflineEmissionsTracker:
    """Mirrors codecarbon.OfflineEmissionsTracker's task API over a FakeGpu's counter.

    ``stop_task`` returns the GPU energy since ``start_task`` in kWh, as CodeCarbon does.
    """

    def __init__(self, gpu: FakeGpu, fail: bool = False) -> None:
        self.gpu, self.fail = gpu, fail
        self.started_at_j: float | None = None
        self.tasks: list[str] = []

    def start_task(self, task_name=None) -> None:
        assert self.started_at_j is None, "a task is already under measure"
        self.started_at_j = self.gpu.energy_counter_j()
        self.tasks.append(task_name)

    def stop_task(self, task_name: str = None) -> FakeEmissionsData:
        if self.fail:
            raise RuntimeError("pynvml gone")
        assert self.started_at_j is not None
        now_j = self.gpu.energy_counter_j()
        energy_kwh = (now_j - self.started_at_j) / J_PER_KWH
        self.started_at_j = None
        return FakeEmissionsData(gpu_energy=energy_kwh, gpu_power=self.gpu.sample(0.0).power_w)


def fake_facts(clock, power_w=200.0, count=1):
    return GpuSet([FakeGpu([(0.0, power_w), (1e6, power_w)], index=i, clock=clock,
                           temperature_c=[(0.0, 50.0), (1e6, 50.0)]) for i in range(count)],
                  driver_version="999.1")


def test_task_energies_sum_into_a_counter_with_codecarbon_method():
    clock = FakeClock()
    facts = fake_facts(clock, count=2)
    trackers = {}
    gpus = discover_codecarbon_gpus(
        facts, lambda index: trackers.setdefault(index, FakeOfflineEmissionsTracker(facts[index])))
    assert gpus.source == "codecarbon" and sorted(trackers) == [0, 1]
    sampler = PowerSampler(gpus, 100, clock=clock)
    meter = EnergyMeter(gpus, sampler)
    start = meter.mark()
    for _ in range(20):
        clock.advance(0.5)
        sampler.sample_now()
    reading = meter.between(start, meter.mark())
    assert reading.method == "codecarbon_counter"
    assert reading.energy_per_gpu_j == pytest.approx([200.0 * 10.0] * 2)
    assert reading.energy_integrated_j == pytest.approx(2 * 200.0 * 10.0, rel=0.01)
    sample = gpus[0].sample(clock())
    assert sample.temperature_c == 50.0 and sample.power_w == 200.0  # NVML facts, CC power
    gpus.close()
    assert all(tracker.started_at_j is None for tracker in trackers.values())  # no task left


def test_counter_is_monotonic_across_reads():
    clock = FakeClock()
    facts = fake_facts(clock)
    gpu = CodeCarbonGpu(FakeOfflineEmissionsTracker(facts[0]), facts[0])
    readings = []
    for _ in range(5):
        readings.append(gpu.energy_counter_j())
        clock.advance(1.0)
    assert readings == pytest.approx([0.0, 200.0, 400.0, 600.0, 800.0])


def test_codecarbon_failures_become_energy_errors():
    clock = FakeClock()
    facts = fake_facts(clock)
    gpu = CodeCarbonGpu(FakeOfflineEmissionsTracker(facts[0], fail=True), facts[0])
    gpu.energy_counter_j()  # opens the first task
    with pytest.raises(EnergyError, match="codecarbon failed: RuntimeError: pynvml gone"):
        gpu.energy_counter_j()


def test_missing_codecarbon_is_a_preflight_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    with pytest.raises(PreflightError, match="codecarbon is not installed") as caught:
        codecarbon_tracker(0)
    assert "llem[codecarbon]" in caught.value.fix


def run_spec(model_dir):
    config = ExperimentConfig(
        model=str(model_dir), backend="pytorch", precision="fp32", n=4, input_len=8,
        output_len=6, warmup={"n_warmup": 1, "min_seconds": 0}, baseline={"duration_s": 0.3},
        energy={"backend": "codecarbon", "sample_interval_ms": 50},
        pytorch={"batch_size": 2})
    return RunSpec(run_id="cc", config=config)


def test_a_run_measured_through_codecarbon(tiny_model_dir, tmp_path):
    facts = GpuSet([FakeGpu([(0.0, 150.0), (1e6, 150.0)],
                            temperature_c=[(0.0, 45.0), (1e6, 45.0)])], driver_version="999.1")
    result = ExperimentRun(run_spec(tiny_model_dir), tmp_path / "r", gpus=facts, device="cpu",
                           tracker_factory=lambda i: FakeOfflineEmissionsTracker(facts[i])
                           ).execute()
    energy = result.energy
    assert energy.energy_method == "codecarbon_counter"
    # each read is a stop_task + start_task, so the counter is read a little after the mark
    assert energy.energy_j == pytest.approx(150.0 * result.throughput.duration_s, rel=0.02)
    assert result.baseline is not None
    assert result.baseline.power_w[0] == pytest.approx(150.0, rel=0.01)
    assert energy.prefill is not None and energy.prefill.energy_j is not None
    assert "no_energy_sensor" not in result.warning_codes()


def test_codecarbon_without_a_gpu_fails_preflight(tiny_model_dir, tmp_path):
    with pytest.raises(PreflightError, match="'codecarbon' but NVML found no NVIDIA GPU"):
        ExperimentRun(run_spec(tiny_model_dir), tmp_path / "r", gpus=GpuSet(),
                      device="cpu").execute()


def test_fake_mirrors_the_codecarbon_surface_we_call():
    codecarbon = pytest.importorskip("codecarbon")
    from codecarbon.output_methods.emissions_data import EmissionsData

    tracker = codecarbon.OfflineEmissionsTracker
    for name in ("start_task", "stop_task"):
        real = inspect.signature(getattr(tracker, name))
        fake = inspect.signature(getattr(FakeOfflineEmissionsTracker, name))
        assert list(real.parameters) == list(fake.parameters), name
    accepted = (set(inspect.signature(tracker.__init__).parameters)
                | set(inspect.signature(codecarbon.emissions_tracker.BaseEmissionsTracker
                                        .__init__).parameters))
    for keyword in ("project_name", "gpu_ids", "tracking_mode", "save_to_file", "log_level",
                    "allow_multiple_runs", "country_iso_code"):
        assert keyword in accepted, keyword
    fields = {field.name for field in dataclasses.fields(EmissionsData)}
    assert {"gpu_energy", "gpu_power"} <= fields
