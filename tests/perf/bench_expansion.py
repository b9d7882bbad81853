"""Benchmark: a 10,000-run grid expanded, validated and dry-run (goal: < 3 s, < 300 MB).

Runs ``llem run --dry-run --json`` on a generated study as a child process and reads its wall
time and peak RSS, so interpreter start-up and imports are included, as a user sees them.

    .venv/bin/python tests/perf/bench_expansion.py
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = """\
name: grid-10k
model: some/model
backend: pytorch
execution: {n_cycles: 1}
sweep:
  input_len: [%s]
  pytorch.batch_size: [%s]
"""


def main() -> None:
    """Print wall time and peak memory of a 10,000-run dry run, and their ratio to the goals."""
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "grid.yaml"
        values = ", ".join(str(v) for v in range(1, 101))
        study.write_text(GRID % (values, values))
        llem = Path(sys.executable).with_name("llem")
        start = time.perf_counter()
        done = subprocess.run([str(llem), "run", str(study), "--dry-run", "--json"],
                              capture_output=True, text=True, check=False)
        wall_s = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if done.returncode != 0:
        sys.exit(f"dry run failed ({done.returncode}): {done.stderr[-2000:]}")
    runs = done.stdout.count('"_c1"') or done.stdout.count("_c1")
    print(f"runs expanded: {runs}")
    print(f"wall time: {wall_s:.2f} s  (goal < 3 s; ratio to goal {wall_s / 3:.2f})")
    print(f"peak RSS: {peak_mb:.0f} MB  (goal < 300 MB; ratio to goal {peak_mb / 300:.2f})")


if __name__ == "__main__":
    main()
