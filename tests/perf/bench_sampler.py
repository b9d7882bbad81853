"""Benchmark: the power sampler at 100 ms under full CPU load (goals: jitter within +-10 %,
CPU cost at most 1 % of one core).

Every core is kept busy by a spinning child process while the sampler runs alone in this
process for DURATION_S; jitter is each tick's distance from its schedule, and CPU cost is this
process's CPU time over the wall time. Reads NVML GPUs when present, else 8 FakeGpu traces
(a fake read is cheaper than an NVML call, so on a GPU machine rerun with real GPUs).

    .venv/bin/python tests/perf/bench_sampler.py [DURATION_S]
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time

import numpy as np

from harness.energy import GpuSet, PowerSampler, discover_gpus
from harness.testing import FakeGpu

INTERVAL_MS = 100


def spin(stop_at: float) -> None:
    """Burn one core until ``stop_at`` (epoch s)."""
    while time.time() < stop_at:
        pass


def main() -> None:
    """Print tick jitter and CPU cost of the sampler thread."""
    duration_s = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    gpus = discover_gpus()
    source = "NVML"
    if len(gpus) == 0:
        gpus = GpuSet([FakeGpu([(0.0, 300.0), (1e6, 300.0)], index=i) for i in range(8)])
        source = "8 FakeGpu traces"
    stop_at = time.time() + duration_s + 2
    load = [multiprocessing.Process(target=spin, args=(stop_at,))
            for _ in range(os.cpu_count() or 1)]
    for process in load:
        process.start()
    time.sleep(1.0)  # let the load settle
    sampler = PowerSampler(gpus, INTERVAL_MS)
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    sampler.start()
    time.sleep(duration_s)
    sampler.stop()
    cpu_s, wall_s = time.process_time() - cpu_before, time.perf_counter() - wall_before
    for process in load:
        process.join()
    # The last tick is the extra one stop() takes off schedule; leave it out.
    ticks = np.asarray([batch.t_s for batch in sampler.batches()])[:-1]
    interval_s = INTERVAL_MS / 1000
    slots = np.round((ticks - ticks[0]) / interval_s)
    lateness_pct = 100 * (ticks - ticks[0] - slots * interval_s) / interval_s
    gaps_pct = 100 * (np.diff(ticks) - interval_s) / interval_s
    missed = int(slots[-1] + 1 - len(ticks))
    print(f"source: {source}; {len(ticks)} ticks in {wall_s:.1f} s under {len(load)} spinning "
          f"processes; {missed} ticks skipped")
    late = np.abs(lateness_pct)
    print(f"lateness vs schedule: p50 {np.percentile(late, 50):.1f} %, p99 "
          f"{np.percentile(late, 99):.1f} %, worst {late.max():.1f} % of the interval"
          "  (goal within +-10 %)")
    print(f"tick-to-tick interval: p99 deviation {np.percentile(np.abs(gaps_pct), 99):.1f} %")
    print(f"sampler CPU: {100 * cpu_s / wall_s:.2f} % of one core  (goal <= 1 %)")


if __name__ == "__main__":
    main()
