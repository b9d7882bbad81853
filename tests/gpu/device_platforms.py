"""What `make device-check` reads and computes on: a real NVIDIA GPU, or FakeGpu traces.

The check's sections are written once against :class:`Platform`. :class:`GpuPlatform` reads
the GPU through NVML (``pynvml``), computes on CUDA and builds a ~1B-parameter model;
:class:`CpuPlatform` serves :class:`harness.testing.FakeGpu` traces under pynvml's names
(:class:`harness.testing.FakePynvml`), replays them into harness runs whose tiny model
computes on the CPU, and knows the true value of every figure (``truth``), so the CPU mode
exercises every section's code end to end without a GPU.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.energy import GpuSet, discover_gpus
from harness.testing import FakeGpu, FakePynvml, fake_zeus_get_gpus, visible_fake_gpus

SHAPE_1B = {"layers": 18, "hidden_size": 2048, "heads": 16, "kv_heads": 4, "vocab_size": 512}
"""TinyLlama-like: 1.09 B non-embedding parameters (18 x 60.8 M), bf16 weights."""

FAKE_COUNTER_PERIOD_S = 0.1
"""The fakes' energy counter moves every 100 ms, as NVML's does on recent GPUs."""
FAKE_POWER_PERIOD_S = 0.05
"""The fakes' reported power is refreshed every 50 ms (a value unlike the counter's, so the
check must tell the two apart)."""
FAKE_POWER_AVERAGE_S = 1.0
"""The fakes report power as a 1 s moving average, as recent NVIDIA GPUs do."""
FAKE_RUN_POWER_W = 300.0
"""Constant power of the fakes behind harness runs: a window's true energy is 300 W x its
length, whatever the window's edges."""


@dataclass(frozen=True)
class Durations:
    """How long each timed section measures (s)."""

    idle_s: float
    poll_s: float
    settle_s: float
    budget_s: float
    first_run_guess_s: float


@dataclass(frozen=True)
class Workload:
    """The model and the two configurations the J/token cycles interleave."""

    shape: dict[str, int]
    dtype: str
    precision: str
    input_len: int
    output_len: int
    configs: dict[str, dict[str, int]]
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sensor:
    """One GPU as pynvml (or a fake of it) serves it, and what is known to be true of it."""

    nvml: Any
    handle: Any
    fake: FakeGpu | None = None

    def counter_j(self) -> float:
        """The total-energy counter (J)."""
        return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)) / 1000.0

    def power_w(self) -> float:
        """The power reading (W)."""
        return float(self.nvml.nvmlDeviceGetPowerUsage(self.handle)) / 1000.0

    def temperature_c(self) -> float | None:
        """The core temperature (degC); None where the sensor cannot say."""
        try:
            return float(self.nvml.nvmlDeviceGetTemperature(self.handle,
                                                           self.nvml.NVML_TEMPERATURE_GPU))
        except Exception:  # a figure beside the point of the section: leave it out
            return None


class Platform:
    """Where the check reads energy and computes; see the module docstring."""

    mode: str
    device: str
    durations: Durations
    workload: Workload

    def machine(self) -> GpuSet:
        """Every GPU of the machine through the harness's device interface."""
        raise NotImplementedError

    def sensor(self, kind: str, nvml_index: int) -> Sensor:
        """The GPU at ``nvml_index`` for a section that reads pynvml itself."""
        raise NotImplementedError

    def cuda_device_uuids(self) -> list[str]:
        """UUIDs of the CUDA devices this process sees now, CUDA device 0 first."""
        raise NotImplementedError

    def run_machine(self) -> tuple[GpuSet | None, Callable[[], Any] | None]:
        """What a harness run measures (None: NVML itself) and its Zeus getter (None: Zeus)."""
        raise NotImplementedError

    def load(self) -> contextlib.AbstractContextManager[None]:
        """Keep the device busy with matrix products until the block ends."""
        raise NotImplementedError

    def prepare_identity(self) -> dict[str, str | None]:
        """Set up what the identity section selects from; returns variables to restore."""
        return {}

    def zeus_available(self) -> str | None:
        """Why Zeus cannot be compared here, or None when it can."""
        return None

    def run_truth(self, duration_s: float) -> dict[str, float] | None:
        """The true energy of a run's window of ``duration_s``, where it is known."""
        return None


class GpuPlatform(Platform):
    """A real NVIDIA GPU: NVML through pynvml, compute through torch on CUDA."""

    mode = "gpu"
    device = "cuda:0"
    durations = Durations(idle_s=20.0, poll_s=5.0, settle_s=2.0, budget_s=420.0,
                          first_run_guess_s=45.0)
    workload = Workload(
        shape=SHAPE_1B, dtype="bfloat16", precision="bf16", input_len=256, output_len=128,
        # six static batches each, so both windows last about as long
        configs={"A": {"batch_size": 8, "n": 48}, "B": {"batch_size": 32, "n": 192}},
        settings={"warmup": {"n_warmup": 2, "min_seconds": 5}, "baseline_s": 5.0,
                  "prefill_pass_min_s": 5.0},
    )

    def __init__(self) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()  # held for the whole check; runs open and close their own

    def machine(self) -> GpuSet:
        """NVML's GPUs (the harness's own discovery)."""
        return discover_gpus()

    def sensor(self, kind: str, nvml_index: int) -> Sensor:
        """The real GPU through pynvml."""
        return Sensor(self._nvml, self._nvml.nvmlDeviceGetHandleByIndex(nvml_index))

    def cuda_device_uuids(self) -> list[str]:
        """Initialises CUDA (after the identity section narrowed the view)."""
        import torch

        return [str(torch.cuda.get_device_properties(i).uuid)
                for i in range(torch.cuda.device_count())]

    def run_machine(self) -> tuple[GpuSet | None, Callable[[], Any] | None]:
        """Runs discover NVML and import Zeus themselves, as in any study."""
        return None, None

    def load(self) -> contextlib.AbstractContextManager[None]:
        """8192^3 bf16 products, ten per synchronisation, in a background thread."""
        return _background(_gpu_products)

    def zeus_available(self) -> str | None:
        """Zeus is compared when it imports."""
        try:
            import zeus.device  # noqa: F401
        except Exception as error:  # ImportError, or a broken install
            return f"zeus does not import: {type(error).__name__}: {error}"
        return None


class CpuPlatform(Platform):
    """FakeGpu traces for every GPU reading, the tiny model on the CPU."""

    mode = "cpu"
    device = "cpu"
    durations = Durations(idle_s=2.0, poll_s=2.0, settle_s=0.2, budget_s=110.0,
                          first_run_guess_s=6.0)
    workload = Workload(
        shape={}, dtype="float32", precision="fp32", input_len=32, output_len=64,
        configs={"A": {"batch_size": 2, "n": 32}, "B": {"batch_size": 8, "n": 128}},
        settings={"warmup": {"n_warmup": 1, "min_seconds": 0}, "baseline_s": 0.5,
                  "prefill_pass_min_s": 0.5},
    )
    IDENTITY_VISIBLE = "1"
    """CUDA_VISIBLE_DEVICES during the identity section: a runner gave the run NVML GPU 1."""

    def __init__(self) -> None:
        import torch

        # A 64-wide model gains nothing from intra-op threads, and on a shared machine their
        # spin-waits made window lengths vary five-fold from run to run.
        torch.set_num_threads(1)
        self._identity_gpus: list[FakeGpu] = []

    def machine(self) -> GpuSet:
        """Two fake GPUs with UUIDs like real ones (the identity section picks one)."""
        self._identity_gpus = [
            FakeGpu([(0.0, 70.0)], index=i,
                    info={"name": "Fake GPU (device-check)", "uuid": f"GPU-{i:08x}-fake"})
            for i in range(2)]
        return GpuSet(self._identity_gpus, driver_version="fake", cuda_version=None)

    def sensor(self, kind: str, nvml_index: int) -> Sensor:
        """A fresh fake GPU playing the section's trace, served as pynvml serves a GPU."""
        gpu = fake_sensor_gpu(kind)
        nvml = FakePynvml([gpu])
        return Sensor(nvml, nvml.nvmlDeviceGetHandleByIndex(0), fake=gpu)

    def cuda_device_uuids(self) -> list[str]:
        """The fake GPUs CUDA_VISIBLE_DEVICES names, as CUDA would number them."""
        return [gpu.info().uuid for gpu in visible_fake_gpus()]

    def run_machine(self) -> tuple[GpuSet | None, Callable[[], Any] | None]:
        """A fresh constant-power fake per run, with Zeus's collection over it."""
        gpu = FakeGpu([(0.0, FAKE_RUN_POWER_W)], counter_update_period_s=FAKE_COUNTER_PERIOD_S,
                      power_average_s=FAKE_POWER_AVERAGE_S,
                      power_update_period_s=FAKE_POWER_PERIOD_S)
        return GpuSet([gpu], driver_version="fake"), fake_zeus_get_gpus([gpu])

    def run_truth(self, duration_s: float) -> dict[str, float] | None:
        """Constant power: P x the window; a counter moving every period errs by < P x period.

        Each edge reads the counter's value at its last update, under one period earlier, so
        the window's counter delta spans between D - period and D + period of power.
        """
        return {"energy_j": FAKE_RUN_POWER_W * duration_s,
                "counter_bound_j": FAKE_RUN_POWER_W * FAKE_COUNTER_PERIOD_S}

    def load(self) -> contextlib.AbstractContextManager[None]:
        """Small CPU products with pauses: the code path, not a load (the trace is the load)."""
        return _background(_cpu_products)

    def prepare_identity(self) -> dict[str, str | None]:
        """Restrict the run to NVML GPU 1, as a runner would."""
        saved = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
                 "CUDA_DEVICE_ORDER": os.environ.get("CUDA_DEVICE_ORDER")}
        os.environ["CUDA_VISIBLE_DEVICES"] = self.IDENTITY_VISIBLE
        return saved


def ripple_trace(mean_w: float, amplitude_w: float, duration_s: float,
                 step_s: float = 0.037, seed: int = 0) -> list[tuple[float, float]]:
    """Seeded random power around ``mean_w``, a new value every ``step_s`` (W).

    The step is incommensurate with the fakes' update periods and averaging window, so every
    refresh of the averaged power reports a new value, as a busy GPU's does.
    """
    rng = random.Random(seed)  # noqa: S311 - a trace, not cryptography
    steps = int(duration_s / step_s) + 2
    return [(i * step_s, mean_w + amplitude_w * (2 * rng.random() - 1)) for i in range(steps)]


def fake_sensor_gpu(kind: str) -> FakeGpu:
    """The fake GPU of a section: loaded (~400 W) or idle (~75 W), NVML-like updates."""
    mean_w, amplitude_w = (400.0, 30.0) if kind == "load" else (75.0, 5.0)
    # long enough for the section, short enough that each counter read stays cheap
    trace = ripple_trace(mean_w, amplitude_w, duration_s=CpuPlatform.durations.idle_s + 5.0)
    return FakeGpu(trace, counter_update_period_s=FAKE_COUNTER_PERIOD_S,
                   power_average_s=FAKE_POWER_AVERAGE_S,
                   power_update_period_s=FAKE_POWER_PERIOD_S,
                   temperature_c=[(0.0, 40.0)], info={"uuid": f"GPU-{kind}-fake"})


@contextlib.contextmanager
def _background(work: Callable[[threading.Event], None]) -> Iterator[None]:
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            work(stop)
        except BaseException as error:  # surfaced in the caller's thread below
            errors.append(error)

    thread = threading.Thread(target=target, name="device-check-load", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if errors:
        raise RuntimeError(f"the load thread failed: {errors[0]!r}") from errors[0]


def _gpu_products(stop: threading.Event) -> None:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn_like(a)
    out = torch.empty_like(a)
    while not stop.is_set():
        for _ in range(10):  # ~14 ms of work on an H200 between synchronisations
            torch.matmul(a, b, out=out)
        torch.cuda.synchronize()  # releases the GIL: the polling thread reads meanwhile
    del a, b, out
    torch.cuda.empty_cache()


def _cpu_products(stop: threading.Event) -> None:
    import torch

    a = torch.randn(64, 64)
    while not stop.is_set():
        a = torch.tanh(a @ a)
        time.sleep(0.002)


def platform_for(mode: str) -> Platform:
    """The platform of a mode ("gpu" or "cpu")."""
    return GpuPlatform() if mode == "gpu" else CpuPlatform()


def model_dir_for(platform: Platform, work: Path) -> Path:
    """Where the check's model is built."""
    return work / ("model-1b-bf16" if platform.mode == "gpu" else "model-tiny")
