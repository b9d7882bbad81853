"""Benchmark: the CodeCarbon source's energy error against a known trace (goal: within 0.5 %).

The REAL installed codecarbon reads a FakeGpu through a FakePynvml, in real time: a bursty
trace (150 W / 450 W, switching every 0.37 s) whose energy counter, like NVML's, moves only
every 100 ms, with the update grid at a random phase. llem's CodeCarbon source measures
WINDOWS windows of WINDOW_S seconds while the sampler runs at 100 ms, as in a run. For each
window it prints the true energy (the exact integral of the trace between the window's marks),
the CodeCarbon figure and its error, and the error of NVML's counter read at the same two
instants: the counter's own 100 ms granularity, which no reader of it can beat. A
``.codecarbon.config``-style ``CODECARBON_PUE=1.5`` is set to show it has no effect.

    PYTHONPATH=. .venv/bin/python tests/perf/bench_codecarbon_accuracy.py [WINDOWS] [WINDOW_S]
"""

from __future__ import annotations

import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from harness.energy import EnergyMeter, GpuSet, PowerSampler
from harness.energy.codecarbon import discover_codecarbon_gpus
from harness.testing import FakeGpu, FakePynvml

SWITCH_S = 0.37
LOW_W, HIGH_W = 150.0, 450.0
INTERVAL_MS = 100


def bursty_trace(duration_s: float) -> list[tuple[float, float]]:
    """Square wave between LOW_W and HIGH_W, switching every SWITCH_S (1 ms edges)."""
    points, t_s, high = [(0.0, LOW_W)], SWITCH_S, True
    while t_s < duration_s:
        points += [(t_s, points[-1][1]), (t_s + 0.001, HIGH_W if high else LOW_W)]
        t_s, high = t_s + SWITCH_S, not high
    return points


def codecarbon_over(gpus: list[FakeGpu]) -> None:
    """Make the codecarbon imported next find ``gpus`` (call before importing it)."""
    if any(name.split(".")[0] == "codecarbon" for name in sys.modules):
        raise RuntimeError("codecarbon is already imported")
    sys.modules["pynvml"] = FakePynvml(gpus)
    sys.modules["amdsmi"] = None  # type: ignore[assignment]  # NVIDIA GPUs only
    smi_dir = Path(tempfile.mkdtemp())
    (smi_dir / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")  # CodeCarbon runs it to look
    (smi_dir / "nvidia-smi").chmod(0o755)
    os.environ["PATH"] = f"{smi_dir}{os.pathsep}{os.environ['PATH']}"


def main() -> None:
    """Measure the windows and print the figures."""
    windows = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    window_s = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    gpu = FakeGpu(bursty_trace(windows * (window_s + 2) + 60), counter_update_period_s=0.1,
                  counter_update_phase_s=random.uniform(0.0, 0.1), counter_offset_j=1e6,
                  power_average_s=1.0, power_update_period_s=0.1)
    codecarbon_over([gpu])
    os.environ["CODECARBON_PUE"] = "1.5"
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    gpus = discover_codecarbon_gpus(GpuSet([gpu], driver_version="fake"))
    sampler = PowerSampler(gpus, INTERVAL_MS)
    meter = EnergyMeter(gpus, sampler)
    errors = []
    with sampler:
        for _ in range(windows):
            start = meter.mark()
            time.sleep(window_s)
            end = meter.mark()
            reading = meter.between(start, end)
            true_j = gpu.true_energy_j(start.t_s, end.t_s)
            nvml_j = (gpu.counter_at(end.t_s) or 0.0) - (gpu.counter_at(start.t_s) or 0.0)
            error = 100 * ((reading.energy_j or 0.0) - true_j) / true_j
            errors.append(error)
            print(f"window {end.t_s - start.t_s:6.2f} s: true {true_j:9.2f} J, codecarbon "
                  f"{reading.energy_j:9.2f} J ({error:+.3f} %), NVML counter at the same "
                  f"instants {100 * (nvml_j - true_j) / true_j:+.3f} %, integrated NVML power "
                  f"{100 * ((reading.energy_integrated_j or 0.0) - true_j) / true_j:+.3f} %")
    gpus.close()
    counter_pct = 100 * HIGH_W * 0.1 / ((LOW_W + HIGH_W) / 2 * window_s)
    print(f"codecarbon error: max |error| {max(abs(e) for e in errors):.3f} %, mean "
          f"{sum(errors) / len(errors):+.3f} % over {windows} windows of {window_s:g} s "
          f"(goal: within 0.5 %; the counter's 100 ms alone allows +-{counter_pct:.2f} %)")


if __name__ == "__main__":
    main()
