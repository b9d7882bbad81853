"""Benchmark: what one energy-counter read costs through CodeCarbon, next to an NVML read.

With ``energy.backend: codecarbon`` every counter read is a ``stop_task()`` + ``start_task()``
pair on a real ``OfflineEmissionsTracker`` (CodeCarbon also measures CPU and RAM on each). This
times READS such pairs and, side by side in the same run, the same number of reads of the
NVML device the harness would use otherwise (a FakeGpu where there is no GPU: then the figure
is a lower bound, and CodeCarbon has no GPU to read either). Prints median and p90 per read and
the share of a 100 ms sampling interval one read takes.

    .venv/bin/python tests/perf/bench_codecarbon_read.py [READS]
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import numpy as np

from harness.energy import GpuSet, discover_gpus
from harness.energy.codecarbon import CodeCarbonGpu, codecarbon_tracker
from harness.testing import FakeGpu

INTERVAL_MS = 100


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
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    gpus = discover_gpus()
    facts: GpuSet = gpus if len(gpus) else GpuSet([FakeGpu([(0.0, 100.0), (1e6, 100.0)])])
    kind = "NVML" if len(gpus) else "FakeGpu (no NVIDIA GPU here)"
    device = CodeCarbonGpu(codecarbon_tracker(facts[0].index), facts[0])
    device.energy_counter_j()  # opens the first task
    rounds = {"codecarbon": [], "direct": []}
    for _ in range(3):  # interleaved, so drift affects both alike
        rounds["codecarbon"].append(timed(device.energy_counter_j, reads))
        rounds["direct"].append(timed(facts[0].energy_counter_j, reads))
    device.stop()
    facts.close()
    codecarbon = np.concatenate(rounds["codecarbon"])
    direct = np.concatenate(rounds["direct"])
    for name, times in (("codecarbon", codecarbon), (f"direct {kind}", direct)):
        print(f"{name:>40}: median {1e3 * np.median(times):.3f} ms, p90 "
              f"{1e3 * np.percentile(times, 90):.3f} ms per read "
              f"({100 * np.median(times) / (INTERVAL_MS / 1e3):.2f} % of a {INTERVAL_MS} ms "
              "interval)")
    print(f"{'ratio codecarbon / direct (median)':>40}: "
          f"{np.median(codecarbon) / np.median(direct):.1f}")


if __name__ == "__main__":
    main()
