"""Benchmark: what one window edge costs through CodeCarbon, next to an NVML counter read.

With ``energy.backend: codecarbon`` the sampler never calls CodeCarbon (power comes from NVML);
only the meter's marks at window edges do, each a ``stop_task()`` + ``start_task()`` pair on a
real ``OfflineEmissionsTracker`` (CodeCarbon also measures CPU and RAM on each), plus llem's two
NVML counter reads around the task. This times READS such edges and, side by side in the same
run, the same number of reads of the NVML device the harness would use otherwise. Where there
is no NVIDIA GPU, CodeCarbon reads a FakeGpu through a FakePynvml instead (a fake read is
cheaper than an NVML call, so on a GPU machine the figures are higher). Prints median and p90
per read, and how long a mark takes to date its edge (half a read).

    PYTHONPATH=. .venv/bin/python tests/perf/bench_codecarbon_read.py [READS]
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import numpy as np
from bench_codecarbon_accuracy import codecarbon_over

from harness.energy import GpuSet, discover_gpus
from harness.energy.codecarbon import discover_codecarbon_gpus
from harness.testing import FakeGpu


def timed(read: Callable[[], object], reads: int) -> np.ndarray:
    """Seconds per call of ``read``, ``reads`` times."""
    times = np.empty(reads)
    for i in range(reads):
        started = time.perf_counter()
        read()
        times[i] = time.perf_counter() - started
    return times


def main() -> None:
    """Time both sources and print the figures."""
    reads = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    facts = discover_gpus()
    kind = "NVML"
    if len(facts) == 0:
        gpu = FakeGpu([(0.0, 100.0), (1e6, 100.0)], counter_update_period_s=0.1)
        codecarbon_over([gpu])
        facts, kind = GpuSet([gpu], driver_version="fake"), "FakeGpu (no NVIDIA GPU here)"
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    gpus = discover_codecarbon_gpus(GpuSet([facts[0]], driver_version=facts.driver_version))
    device = gpus[0]
    device.energy_counter_j()  # opens the first task
    rounds: dict[str, list[np.ndarray]] = {"codecarbon": [], "direct": []}
    for _ in range(3):  # interleaved, so drift affects both alike
        rounds["codecarbon"].append(timed(device.energy_counter_j, reads))
        rounds["direct"].append(timed(facts[0].energy_counter_j, reads))
    gpus.close()
    facts.close()
    codecarbon = np.concatenate(rounds["codecarbon"])
    direct = np.concatenate(rounds["direct"])
    for name, times in (("codecarbon window edge", codecarbon), (f"direct {kind}", direct)):
        print(f"{name:>40}: median {1e3 * np.median(times):.3f} ms, p90 "
              f"{1e3 * np.percentile(times, 90):.3f} ms per read")
    print(f"{'ratio codecarbon / direct (median)':>40}: "
          f"{np.median(codecarbon) / np.median(direct):.1f}")


if __name__ == "__main__":
    main()
