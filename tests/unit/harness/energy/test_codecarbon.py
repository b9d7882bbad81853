"""CodeCarbon behind the device interface, against known true energies.

Two trackers are used: a fake of ``codecarbon.OfflineEmissionsTracker`` that reproduces what
CodeCarbon 3.3 does with GPU energy (read from its source: how a task's energy and power are
computed, where ``pue`` applies, what a counter reset becomes, how GPUs are found, the task
table), and the REAL installed codecarbon, imported afresh over a FakePynvml that serves FakeGpu
traces to it. The fidelity tests run the same scenario through both; the llem tests show that
the CodeCarbon source gives the true energy of a trace whose counter, like NVML's, moves only
every 100 ms.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import importlib
import inspect
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from harness.energy import EnergyMeter, GpuSet, PowerSampler
from harness.energy.codecarbon import (
    KWH_PER_J,
    CodeCarbonGpu,
    codecarbon_tracker,
    discover_codecarbon_gpus,
    tracker_settings,
)
from harness.errors import CounterWentBackwards, EnergyError, PreflightError
from harness.protocol import ExperimentRun
from harness.schema import ExperimentConfig
from harness.schema.result import SourceGpu
from harness.schema.run_spec import RunSpec
from harness.testing import FakeClock, FakeGpu, FakePynvml, edge_tolerance_j

UPDATE_S = 0.1  # NVML's energy counter moves about every 100 ms
MJ = 2e-3  # J: NVML's counter is integer millijoules, and a window is two reads of it
JOULES_TO_KWH = 2.77778e-7  # codecarbon.core.units.Energy.JOULES_TO_KWH, not 1/3.6e6


# --- the fake tracker ----------------------------------------------------------------------


@dataclasses.dataclass
class FakeMachine:
    """What CodeCarbon finds where it runs.

    ``nvidia_smi``: CodeCarbon looks for NVIDIA GPUs by running ``nvidia-smi --help``.
    ``config``: settings from ``.codecarbon.config`` or ``CODECARBON_*`` variables (strings).
    ``call_cost_s``: time a task call spends besides the GPU counter read (CPU, RAM, emissions),
    after the read in ``stop_task`` and before it in ``start_task``.
    """

    gpus: list[FakeGpu]
    clock: Any  # FakeClock, or the real clock for a whole run
    nvidia_smi: bool = True
    config: dict[str, str] = dataclasses.field(default_factory=dict)
    call_cost_s: float = 0.0


@dataclasses.dataclass
class FakeEmissionsData:
    """The fields of codecarbon's EmissionsData that concern GPU energy."""

    gpu_energy: float  # kWh since the task started (x pue)
    gpu_power: float  # W: the mean of every measurement since the tracker was made (x pue)
    duration: float


class FakeGpuDevice:
    """codecarbon.core.gpu_device.GPUDevice: one GPU's counter baseline and delta."""

    def __init__(self, gpu: FakeGpu) -> None:
        self.gpu = gpu
        self.last_j = self.counter_j()

    def counter_j(self) -> float:
        return round(self.gpu.energy_counter_j() * 1000) / 1000  # NVML's integer mJ

    def start(self) -> None:
        self.last_j = self.counter_j()  # start() forgets everything before it

    def delta(self, duration_s: float) -> tuple[float, float]:
        """(energy J, power W) since the last read; a counter that went back is power x time."""
        now_j = self.counter_j()
        if now_j < self.last_j:
            power_w = self.gpu.reported_power_w(self.gpu.now_s())
            self.last_j = now_j
            return power_w * duration_s, power_w
        energy_j, self.last_j = now_j - self.last_j, now_j
        return energy_j, energy_j / duration_s if duration_s else 0.0


class FakeOfflineEmissionsTracker:
    """codecarbon.OfflineEmissionsTracker's task API, as far as GPU energy goes."""

    def __init__(self, machine: FakeMachine, **settings: Any) -> None:
        self.machine = machine
        self.settings = settings
        self.pue = float(self._setting("pue", 1.0))
        self.gpu_ids = _gpu_ids(self._setting("gpu_ids", None))
        self._tasks: dict[str, bool] = {}  # every task ever started; never shrinks
        self._active_task: str | None = None
        self._start_total_j: float | None = None  # GPU energy total when the running task began
        self._devices: list[FakeGpuDevice] | None = None  # found at first use, as CodeCarbon
        self._total_gpu_j = 0.0
        self._power_sum_w = 0.0
        self._measurements = 0
        self._last_measured_s = machine.clock()
        self.fail = False

    def _setting(self, name: str, default: Any) -> Any:
        if name in self.settings:
            return self.settings[name]
        return self.machine.config.get(name, default)

    def _hardware(self) -> list[FakeGpuDevice]:
        if self._devices is None:
            found = self.machine.gpus if self.machine.nvidia_smi else []
            self._devices = [FakeGpuDevice(gpu) for gpu in found]
            names = collections.Counter(gpu.info().name for gpu in found)
            self.gpu_model = "".join(f"{n} x {name}" for name, n in names.items())
            # gpu_count is set from gpu_ids first and replaced only when GPUs are found
            ids = self.gpu_ids
            self.gpu_count = len(found) if found else (len(ids) if ids is not None else 0)
            chosen = ids if ids is not None else range(len(found))
            self.tracked = [i for i in chosen if 0 <= i < len(found)]
        return self._devices

    def get_detected_hardware(self) -> dict[str, Any]:
        self._hardware()
        return {"gpu_count": self.gpu_count, "gpu_model": self.gpu_model,
                "gpu_ids": self.gpu_ids}

    def start_task(self, task_name=None) -> None:
        devices = self._hardware()
        if self._active_task:
            return  # "A task is already under measure"
        name = task_name or str(uuid.uuid4())
        if name in self._tasks:
            name += "_" + str(uuid.uuid4())
        self.machine.clock.advance(self.machine.call_cost_s)
        self._last_measured_s = self.machine.clock()
        for device in devices:
            device.start()
        self._tasks[name] = True
        self._active_task = name
        self._start_total_j = self._total_gpu_j

    def stop_task(self, task_name: str = None) -> FakeEmissionsData | None:
        if self.fail:
            raise RuntimeError("pynvml gone")
        name = task_name or self._active_task
        if self._tasks.get(name) is None:
            return None
        self._measure()
        # The task's energy is measured from the start of the RUNNING task, whatever name is
        # given: any task that exists ends the running one.
        start_j = self._start_total_j
        energy_j = 0.0 if start_j is None else self._total_gpu_j - start_j
        data = FakeEmissionsData(gpu_energy=energy_j * JOULES_TO_KWH,
                                 gpu_power=self._power_sum_w / self._measurements, duration=0.0)
        self.machine.clock.advance(self.machine.call_cost_s)
        self._active_task = self._start_total_j = None
        return data

    def _measure(self) -> None:
        duration_s = self.machine.clock() - self._last_measured_s
        energy_j = power_w = 0.0
        for index, device in enumerate(self._hardware()):
            device_j, device_w = device.delta(duration_s)  # every GPU's baseline moves
            if index in self.tracked:
                energy_j, power_w = energy_j + device_j, power_w + device_w
        self._total_gpu_j += energy_j * self.pue
        self._power_sum_w += power_w * self.pue
        self._measurements += 1
        self._last_measured_s = self.machine.clock()


def _gpu_ids(value: Any) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [int(part) for part in value.split(",") if part]
    return [int(part) for part in value]


def machine_of(*powers_w: float | list[tuple[float, float]], **gpu_options: Any) -> FakeMachine:
    """A machine with one GPU per power (W, or a trace) whose counters move every 100 ms."""
    clock = FakeClock()
    gpus = [FakeGpu(power_w if isinstance(power_w, list) else [(0.0, power_w), (1e6, power_w)],
                    index=i, clock=clock, temperature_c=[(0.0, 50.0), (1e6, 50.0)],
                    counter_update_period_s=UPDATE_S, **gpu_options)
            for i, power_w in enumerate(powers_w)]
    return FakeMachine(gpus=gpus, clock=clock)


def fake_factory(machine: FakeMachine, trackers: dict[int, Any] | None = None):
    """llem's tracker factory, making fake trackers on ``machine`` with llem's settings."""
    def make(index: int) -> Any:
        tracker = codecarbon_tracker(
            index, tracker_class=functools.partial(FakeOfflineEmissionsTracker, machine))
        if trackers is not None:
            trackers[index] = tracker
        return tracker
    return make


def facts_of(machine: FakeMachine) -> GpuSet:
    return GpuSet(machine.gpus, driver_version="999.1")


def measure(gpus: GpuSet, clock: FakeClock, windows: list[tuple[float, float]]):
    """Readings of each (start_s, end_s) window, sampling every 100 ms throughout.

    Returns a list of (meter, start mark, end mark).
    """
    sampler = PowerSampler(gpus, 100, clock=clock)
    meter = EnergyMeter(gpus, sampler)
    marks = []
    for start_s, end_s in windows:
        clock.advance(max(0.0, start_s - clock()))
        start = meter.mark()
        while clock() + 0.1 < end_s:
            clock.advance(0.1)
            sampler.sample_now()
        clock.advance(max(0.0, end_s - clock()))
        marks.append((meter, start, meter.mark()))
    return marks


def true_j(gpu: FakeGpu, start, end) -> float:
    return gpu.true_energy_j(start.t_s, end.t_s)


# A mark reads every counter between two clock readings and is dated at their middle; with
# call_cost_s the read lasts 2 x call_cost_s, so the edges are known to within that.
def read_tolerance_j(power_w: float, machine: FakeMachine) -> float:
    return power_w * 2 * machine.call_cost_s + MJ


# --- llem's CodeCarbon source against known true energies -----------------------------------


def test_nothing_is_lost_between_reads():
    machine = machine_of(300.0)
    machine.call_cost_s = 0.004  # time passes between one task's end and the next one's start
    gpus = discover_codecarbon_gpus(facts_of(machine), fake_factory(machine))
    ((meter, start, end),) = measure(gpus, machine.clock, [(1.0, 31.0)])
    reading = meter.between(start, end)
    assert reading.method == "codecarbon_counter"
    assert reading.energy_j == pytest.approx(true_j(machine.gpus[0], start, end),
                                             abs=read_tolerance_j(300.0, machine))
    gpus.close()


def test_power_comes_from_nvml_not_codecarbons_running_mean():
    machine = machine_of([(0.0, 100.0), (30.0, 100.0), (30.001, 400.0), (1e6, 400.0)])
    gpus = discover_codecarbon_gpus(facts_of(machine), fake_factory(machine))
    _, (meter, start, end) = measure(gpus, machine.clock, [(1.0, 21.0), (35.0, 65.0)])
    reading = meter.between(start, end)
    true = true_j(machine.gpus[0], start, end)
    assert reading.energy_integrated_j == pytest.approx(true, rel=0.005)
    assert not reading.warnings  # no energy_disagreement
    assert reading.energy_j == pytest.approx(true, abs=MJ)
    sample = gpus[0].sample(machine.clock())
    assert sample.power_w == 400.0 and sample.temperature_c == 50.0
    gpus.close()


def test_a_pue_or_gpu_ids_in_the_codecarbon_configuration_changes_nothing():
    machine = machine_of(300.0, 500.0)
    machine.config = {"pue": "1.5", "gpu_ids": "1", "allow_multiple_runs": "false"}
    facts = GpuSet(machine.gpus[:1], driver_version="999.1")  # llem measures GPU 0 only
    trackers: dict[int, Any] = {}
    gpus = discover_codecarbon_gpus(facts, fake_factory(machine, trackers))
    ((meter, start, end),) = measure(gpus, machine.clock, [(1.0, 31.0)])
    assert meter.between(start, end).energy_j == pytest.approx(
        true_j(machine.gpus[0], start, end), abs=MJ)
    assert trackers[0].pue == 1.0 and trackers[0].tracked == [0]
    gpus.close()


def test_a_counter_reset_inside_a_window_is_an_error_not_power_times_time():
    machine = machine_of(300.0, counter_offset_j=5e6, backwards_at_s=50.0, backwards_by_j=1e6)
    gpus = discover_codecarbon_gpus(facts_of(machine), fake_factory(machine))
    before, across, after = measure(gpus, machine.clock,
                                    [(1.0, 31.0), (35.0, 65.0), (70.0, 100.0)])
    gpu = machine.gpus[0]
    with pytest.raises(CounterWentBackwards, match="GPU 0's energy counter went backwards"):
        across[0].between(*across[1:])
    assert before[0].between(*before[1:]).energy_j == pytest.approx(
        true_j(gpu, *before[1:]), abs=MJ)
    assert after[0].between(*after[1:]).energy_j == pytest.approx(
        true_j(gpu, *after[1:]), abs=MJ)
    gpus.close()


def test_the_task_table_grows_per_window_not_per_sample():
    machine = machine_of(300.0)
    trackers: dict[int, Any] = {}
    gpus = discover_codecarbon_gpus(facts_of(machine), fake_factory(machine, trackers))
    measure(gpus, machine.clock, [(1.0, 31.0)])  # 300 samples
    # the setup task, the window's task, and the one its end opened
    assert len(trackers[0]._tasks) == 3
    gpus.close()
    assert trackers[0]._active_task is None  # no task left running


def test_a_tracker_that_found_no_gpu_fails_preflight():
    machine = machine_of(300.0)
    machine.nvidia_smi = False
    with pytest.raises(PreflightError, match="CodeCarbon found no GPU, so it would report 0 J "
                       "for GPU 0") as caught:
        discover_codecarbon_gpus(facts_of(machine), fake_factory(machine))
    assert "nvidia-smi" in caught.value.fix and "energy.backend: nvml" in caught.value.fix


def test_a_tracker_that_found_fewer_gpus_than_llem_fails_preflight():
    machine = machine_of(300.0, 300.0)
    codecarbon_machine = dataclasses.replace(machine, gpus=machine.gpus[:1])
    with pytest.raises(PreflightError, match=r"CodeCarbon found '1 x Fake GPU' \(1 GPU\(s\)\), "
                       r"which does not include GPU 1"):
        discover_codecarbon_gpus(facts_of(machine), fake_factory(codecarbon_machine))


def test_a_gpu_without_energy_counter_fails_preflight():
    machine = machine_of(300.0, counter_supported=False)
    with pytest.raises(PreflightError, match="GPU 0 has no energy counter"):
        discover_codecarbon_gpus(facts_of(machine), fake_factory(machine))


def test_what_each_tracker_found_is_kept():
    machine = machine_of(300.0, 300.0)
    gpus = discover_codecarbon_gpus(facts_of(machine), fake_factory(machine))
    assert gpus.found == [SourceGpu(gpu_index=i, tracked_gpu_id=i, gpus_found="2 x Fake GPU",
                                    gpu_count_found=2) for i in range(2)]
    gpus.close()


def test_codecarbon_failures_become_energy_errors():
    machine = machine_of(300.0)
    tracker = codecarbon_tracker(0, functools.partial(FakeOfflineEmissionsTracker, machine))
    gpu = CodeCarbonGpu(tracker, machine.gpus[0], SourceGpu(
        gpu_index=0, tracked_gpu_id=0, gpus_found="1 x Fake GPU", gpu_count_found=1))
    gpu.energy_counter_j()  # opens the first task
    tracker.fail = True
    with pytest.raises(EnergyError, match="codecarbon failed: RuntimeError: pynvml gone"):
        gpu.energy_counter_j()


def test_missing_codecarbon_is_a_preflight_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    with pytest.raises(PreflightError, match="codecarbon is not installed") as caught:
        codecarbon_tracker(0)
    assert "llem[codecarbon]" in caught.value.fix


def test_llem_pins_only_settings_the_real_tracker_accepts_and_the_fake_models():
    codecarbon = pytest.importorskip("codecarbon")
    accepted = (set(inspect.signature(codecarbon.OfflineEmissionsTracker.__init__).parameters)
                | set(inspect.signature(codecarbon.emissions_tracker.BaseEmissionsTracker
                                        .__init__).parameters))
    assert set(tracker_settings(0)) <= accepted
    for name in ("start_task", "stop_task", "get_detected_hardware"):
        real = inspect.signature(getattr(codecarbon.OfflineEmissionsTracker, name))
        fake = inspect.signature(getattr(FakeOfflineEmissionsTracker, name))
        assert list(real.parameters) == list(fake.parameters), name
    from codecarbon.core.units import Energy
    from codecarbon.output_methods.emissions_data import EmissionsData
    assert Energy.JOULES_TO_KWH == JOULES_TO_KWH == KWH_PER_J
    fields = {field.name for field in dataclasses.fields(EmissionsData)}
    assert {field.name for field in dataclasses.fields(FakeEmissionsData)} <= fields


# --- a whole run ---------------------------------------------------------------------------


def run_spec(model_dir):
    config = ExperimentConfig(
        model=str(model_dir), backend="pytorch", precision="fp32", n=4, input_len=8,
        output_len=6, warmup={"n_warmup": 1, "min_seconds": 0}, baseline={"duration_s": 0.3},
        energy={"backend": "codecarbon", "sample_interval_ms": 50, "prefill_pass_min_s": 0.3},
        pytorch={"batch_size": 2})
    return RunSpec(run_id="cc", config=config)


def test_a_run_measured_through_codecarbon(tiny_model_dir, tmp_path):
    gpu = FakeGpu([(0.0, 150.0), (1e6, 150.0)], temperature_c=[(0.0, 45.0), (1e6, 45.0)])
    machine = FakeMachine(gpus=[gpu], clock=_RealClock())  # a run reads the real clock
    result = ExperimentRun(run_spec(tiny_model_dir), tmp_path / "r",
                           gpus=GpuSet([gpu], driver_version="999.1"), device="cpu",
                           tracker_factory=fake_factory(machine)).execute()
    energy = result.energy
    assert energy.energy_method == "codecarbon_counter"
    # a run in real time: a window of a few tenths of a second, edges dated to within ~1 ms
    assert energy.energy_j == pytest.approx(150.0 * result.throughput.duration_s,
                                            abs=edge_tolerance_j(150.0))
    assert energy.energy_integrated_j == pytest.approx(energy.energy_j, rel=0.03)
    assert result.baseline is not None
    assert result.baseline.power_w[0] == pytest.approx(150.0, rel=0.01)
    assert energy.source_gpus == [SourceGpu(gpu_index=0, tracked_gpu_id=0,
                                            gpus_found="1 x Fake GPU", gpu_count_found=1)]
    # read only at the window's edges: the split comes from a prefill pass, read at its edges
    assert energy.phase_split_method == "prefill_pass"
    assert energy.prefill_pass is not None
    assert energy.prefill_pass.energy_j == pytest.approx(
        150.0 * energy.prefill_pass.duration_s, rel=0.02)
    assert "no_energy_sensor" not in result.warning_codes()


def test_a_run_whose_tracker_found_no_gpu_fails_preflight(tiny_model_dir, tmp_path):
    machine = machine_of(150.0)
    machine.nvidia_smi = False
    with pytest.raises(PreflightError, match="CodeCarbon found no GPU"):
        ExperimentRun(run_spec(tiny_model_dir), tmp_path / "r", gpus=facts_of(machine),
                      device="cpu", tracker_factory=fake_factory(machine)).execute()


def test_codecarbon_without_a_gpu_fails_preflight(tiny_model_dir, tmp_path):
    with pytest.raises(PreflightError, match="'codecarbon' but NVML found no NVIDIA GPU"):
        ExperimentRun(run_spec(tiny_model_dir), tmp_path / "r", gpus=GpuSet(),
                      device="cpu").execute()


class _RealClock:
    """time.perf_counter with FakeClock's advance, for a run in real time."""

    def __call__(self) -> float:
        return time.perf_counter()

    def advance(self, dt_s: float) -> float:
        return self()


# --- the real codecarbon over a fake pynvml ------------------------------------------------


class RealCodeCarbon:
    """The installed codecarbon, imported afresh over a FakePynvml, on a scripted machine."""

    def __init__(self, module: Any, nvml: FakePynvml, smi_dir: Path) -> None:
        self.module = module
        self.nvml = nvml
        self.smi_dir = smi_dir

    def use(self, machine: FakeMachine, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make CodeCarbon find ``machine`` from now on."""
        self.nvml.gpus = machine.gpus
        path = [d for d in os.environ["PATH"].split(os.pathsep)
                if not (Path(d) / "nvidia-smi").exists()]
        if machine.nvidia_smi:
            path.insert(0, str(self.smi_dir))
        monkeypatch.setenv("PATH", os.pathsep.join(path))
        for name in [name for name in os.environ if name.lower().startswith("codecarbon_")]:
            monkeypatch.delenv(name)
        for name, value in machine.config.items():
            monkeypatch.setenv(f"CODECARBON_{name.upper()}", value)
        # CodeCarbon keeps what it found per process: forget the previous test's machine
        importlib.import_module("codecarbon.core.hardware_cache")._plans.clear()
        importlib.import_module("codecarbon.core.gpu_nvidia").clear_nvidia_system_cache()

    def tracker(self, **settings: Any) -> Any:
        return self.module.OfflineEmissionsTracker(**settings)


@pytest.fixture(scope="module")
def real_codecarbon(tmp_path_factory):
    pytest.importorskip("codecarbon")
    smi_dir = tmp_path_factory.mktemp("bin")
    (smi_dir / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    (smi_dir / "nvidia-smi").chmod(0o755)
    nvml = FakePynvml()
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in sys.modules if name.split(".")[0] == "codecarbon"]:
            patch.delitem(sys.modules, name)
        patch.setitem(sys.modules, "pynvml", nvml)
        patch.setitem(sys.modules, "amdsmi", None)  # no AMD library: NVIDIA GPUs only
        yield RealCodeCarbon(importlib.import_module("codecarbon"), nvml, smi_dir)
        for name in [name for name in sys.modules if name.split(".")[0] == "codecarbon"]:
            del sys.modules[name]


@pytest.fixture(params=["fake", "real"])
def make_tracker(request, monkeypatch):
    """Makes a tracker on a machine: the fake, or the real codecarbon over a FakePynvml."""
    made = []

    def make(machine: FakeMachine, **settings: Any) -> Any:
        settings = {"project_name": "t", "gpu_ids": [0], "output_methods": [],
                    "log_level": "error", "allow_multiple_runs": True,
                    "country_iso_code": "USA", "force_carbon_intensity_g_co2e_kwh": 0.0,
                    **settings}
        if request.param == "fake":
            tracker = FakeOfflineEmissionsTracker(machine, **settings)
        else:
            real = request.getfixturevalue("real_codecarbon")
            real.use(machine, monkeypatch)
            tracker = real.tracker(**settings)
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        if tracker._active_task:
            tracker.stop_task()


def run_task(tracker, clock: FakeClock, seconds: float, name: str) -> Any:
    tracker.start_task(name)
    clock.advance(seconds)
    return tracker.stop_task(name)


def test_both_task_energy_is_the_counter_delta_since_start_task(make_tracker):
    machine = machine_of(300.0)
    tracker = make_tracker(machine)
    gpu = machine.gpus[0]
    tracker.start_task("a")
    start_j = gpu.energy_counter_j()
    machine.clock.advance(10.0)
    data = tracker.stop_task("a")
    assert data.gpu_energy / KWH_PER_J == pytest.approx(gpu.energy_counter_j() - start_j,
                                                        abs=MJ)


def test_both_energy_between_a_stop_and_the_next_start_is_lost(make_tracker):
    machine = machine_of(300.0)
    tracker = make_tracker(machine)
    first = run_task(tracker, machine.clock, 1.0, "a")
    machine.clock.advance(1.0)  # between the tasks: no task measures it
    second = run_task(tracker, machine.clock, 1.0, "b")
    assert (first.gpu_energy + second.gpu_energy) / KWH_PER_J == pytest.approx(600.0, abs=MJ)


def test_both_gpu_power_is_a_mean_since_the_tracker_was_made(make_tracker):
    machine = machine_of(300.0)
    tracker = make_tracker(machine)
    first = run_task(tracker, machine.clock, 10.0, "a")
    idle = run_task(tracker, machine.clock, 0.0, "b")  # no energy: its own power is 0 W
    assert first.gpu_power > 0
    assert idle.gpu_power == pytest.approx(first.gpu_power / 2)


def test_both_a_configured_pue_multiplies_gpu_energy_unless_pinned(make_tracker):
    machine = machine_of(300.0)
    machine.config = {"pue": "1.5"}
    configured = run_task(make_tracker(machine), machine.clock, 10.0, "a")
    pinned = run_task(make_tracker(machine, pue=1.0), machine.clock, 10.0, "a")
    assert configured.gpu_energy / KWH_PER_J == pytest.approx(1.5 * 3000.0, abs=MJ)
    assert pinned.gpu_energy / KWH_PER_J == pytest.approx(3000.0, abs=MJ)


def test_both_a_counter_that_goes_back_becomes_power_times_time(make_tracker):
    machine = machine_of(300.0, counter_offset_j=5e6, backwards_at_s=5.0, backwards_by_j=1e6)
    tracker = make_tracker(machine)
    data = run_task(tracker, machine.clock, 10.0, "a")  # the counter delta is -997000 J
    assert data is not None and data.gpu_energy >= 0  # no error, no negative energy


def test_both_the_task_table_keeps_every_task(make_tracker):
    machine = machine_of(300.0)
    tracker = make_tracker(machine)
    for i in range(5):
        run_task(tracker, machine.clock, 0.5, f"t{i}")
    assert len(tracker._tasks) == 5


def test_both_without_nvidia_smi_no_gpu_is_found_and_energy_is_zero(make_tracker):
    machine = machine_of(300.0)
    machine.nvidia_smi = False
    tracker = make_tracker(machine)
    hardware = tracker.get_detected_hardware()
    assert hardware["gpu_model"] == "" and hardware["gpu_count"] == 1  # 1: from gpu_ids
    assert run_task(tracker, machine.clock, 10.0, "a").gpu_energy == 0.0


def test_llem_reads_the_true_energy_through_the_real_codecarbon(real_codecarbon, monkeypatch):
    machine = machine_of(300.0, 500.0, counter_offset_j=5e6, backwards_at_s=50.0,
                         backwards_by_j=1e6)
    machine.config = {"pue": "1.5", "gpu_ids": "1"}
    real_codecarbon.use(machine, monkeypatch)
    facts = GpuSet(machine.gpus[:1], driver_version="999.1")
    gpus = discover_codecarbon_gpus(facts)  # the real OfflineEmissionsTracker
    try:
        before, across, after = measure(gpus, machine.clock,
                                        [(1.0, 31.0), (35.0, 65.0), (70.0, 100.0)])
    finally:
        gpus.close()
    gpu = machine.gpus[0]
    reading = before[0].between(*before[1:])
    assert reading.method == "codecarbon_counter"
    assert reading.energy_j == pytest.approx(true_j(gpu, *before[1:]), abs=MJ)
    assert reading.energy_integrated_j == pytest.approx(true_j(gpu, *before[1:]), rel=0.005)
    with pytest.raises(CounterWentBackwards):
        across[0].between(*across[1:])
    assert after[0].between(*after[1:]).energy_j == pytest.approx(
        true_j(gpu, *after[1:]), abs=MJ)
    assert gpus.found == [SourceGpu(gpu_index=0, tracked_gpu_id=0, gpus_found="2 x Fake GPU",
                                    gpu_count_found=2)]


def test_the_real_codecarbon_without_nvidia_smi_fails_preflight(real_codecarbon, monkeypatch):
    machine = machine_of(300.0)
    machine.nvidia_smi = False
    real_codecarbon.use(machine, monkeypatch)
    with pytest.raises(PreflightError, match="CodeCarbon found no GPU"):
        discover_codecarbon_gpus(facts_of(machine))
