"""Benchmark: what following a study's jobs costs the Slurm controller, against a real cluster.

The Slurm runner submits one job per run (one ``sbatch``) and its one watcher asks the
controller for every job of the study with one ``squeue --json`` per ``execution.slurm.poll_s``
(5 s by default), plus up to three reads at each job's end. The cost of one read grows with
the number of jobs the controller holds (``squeue --json`` lists them all, llem's and everyone
else's), so this measures, side by side in one run:

- ``sbatch`` of one held job (the submission cost per run);
- ``squeue --json`` and ``scontrol ping`` with 0, then ``JOBS`` held jobs in the queue;
- the calls and controller time of a 1,000-run study from these, for a run of ``RUN_S``.

Held jobs (``--hold``) never run: they cost the controller only their records. All are
cancelled at the end.

    python tests/perf/bench_slurm_controller.py [JOBS] [RUN_S]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from orchestrator.runners.slurm.client import SlurmClient

POLL_S = 5.0
STUDY_RUNS = 1000
END_READS = 3


def timed(args: list[str], repeats: int = 5) -> tuple[float, int]:
    """Median wall time (s) of a command and the size of its output (bytes)."""
    times, size = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        size = len(done.stdout)
    return statistics.median(times), size


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    run_s = float(sys.argv[2]) if len(sys.argv) > 2 else 120.0
    client = SlurmClient()
    print(client.ping())
    squeue_empty, size_empty = timed(["squeue", "--json"])
    ping_s, _ = timed(["scontrol", "ping"])
    submitted: list[str] = []
    start = time.perf_counter()
    try:
        for _ in range(jobs):
            submitted.append(client.submit("#!/bin/sh\ntrue\n",
                                           ["--hold", "--job-name=llem-bench",
                                            "--output=/dev/null", "--time=1"]))
        sbatch_s = (time.perf_counter() - start) / jobs
        squeue_full, size_full = timed(["squeue", "--json"])
        start = time.perf_counter()
        found, _ = client.jobs_and_queue(submitted[:1])
        parse_s = time.perf_counter() - start
        assert submitted[0] in found
    finally:
        for first in range(0, len(submitted), 500):
            subprocess.run(["scancel", *submitted[first:first + 500]], check=False)
    reads_per_run = run_s / POLL_S + END_READS
    study_reads = STUDY_RUNS * reads_per_run
    print(f"scontrol ping              {ping_s * 1000:8.1f} ms")
    print(f"sbatch (one job)           {sbatch_s * 1000:8.1f} ms")
    print(f"squeue --json, empty queue {squeue_empty * 1000:8.1f} ms  {size_empty / 1024:8.0f} KiB")
    print(f"squeue --json, {jobs} jobs  {squeue_full * 1000:8.1f} ms  "
          f"{size_full / 1024:8.0f} KiB  (llem's read and parse: {parse_s * 1000:.1f} ms)")
    print(f"ratio full / empty queue   {squeue_full / squeue_empty:8.1f} x")
    print(f"\n{STUDY_RUNS}-run study, {run_s:g} s per run, poll {POLL_S:g} s:")
    print(f"  sbatch calls             {STUDY_RUNS}")
    print(f"  squeue calls             {study_reads:.0f} ({1 / POLL_S:.2f} per s while a run "
          "runs)")
    print(f"  controller time, empty   {study_reads * squeue_empty:.0f} s of squeue over "
          f"{STUDY_RUNS * run_s / 3600:.0f} h of runs")
    print(f"  controller time, {jobs} jobs queued  {study_reads * squeue_full:.0f} s")


if __name__ == "__main__":
    main()
