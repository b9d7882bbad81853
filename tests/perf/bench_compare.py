"""Benchmark: how often ``llem compare`` cries wolf, and how often it catches a real regression.

Simulates pairs of studies with normal per-cycle values (CV 1 %, 2 %, 5 %; seeded) and judges
them with ``orchestrator.report.verdicts.verdicts``, the function ``compare_studies`` calls, at
its default settings (threshold 5 %, Benjamini-Hochberg q < 0.05, gating metrics together).
A study has 4 configurations x the 3 default gating metrics (energy per token and dynamic
energy per token: lower is better; throughput: higher is better), so 12 compared pairs.

Columns (each a share of trials; Monte Carlo standard error sqrt(p (1 - p) / trials), about
0.5 points at 5 % and 2000 trials):

- false alarm, 1 pair: no true change, one pair compared alone, verdict *regressed*;
- false alarm, study: no true change in any of the 12 pairs, at least one *regressed* (the
  chance that a nightly fails for nothing; goal <= 5 %);
- detect, 1 pair: a true 10 % regression (worse direction) of a pair compared alone;
- detect, 1 of 12: the same regression in one of the study's 12 pairs, that pair flagged;
- detect, all 12: every pair regressed by 10 %, at least one flagged (the study fails).

    .venv/bin/python tests/perf/bench_compare.py [TRIALS]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from orchestrator.report.verdicts import Better, Sample, verdicts

CVS = (0.01, 0.02, 0.05)
CYCLES = (3, 5)
CONFIGURATIONS = 4
GATING: tuple[tuple[float, Better], ...] = (  # (true mean, better) per gating metric
    (0.012, "lower"), (0.007, "lower"), (850.0, "higher"))
REGRESSION = 0.10
SEED = 20_261_130


def draw(rng: np.random.Generator, mean: float, cv: float, cycles: int) -> list[float]:
    """``cycles`` normal values of ``mean`` with coefficient of variation ``cv``."""
    return [float(v) for v in rng.normal(mean, cv * mean, cycles)]


def worse(mean: float, better: Better) -> float:
    """``mean`` moved 10 % in its worse direction."""
    return mean * (1 + REGRESSION) if better == "lower" else mean * (1 - REGRESSION)


def study(rng: np.random.Generator, cv: float, cycles: int,
          regressed: int) -> list[Sample]:
    """12 pairs; the first ``regressed`` of them truly 10 % worse in the new study."""
    pairs = [metric for _ in range(CONFIGURATIONS) for metric in GATING]
    return [Sample(draw(rng, mean, cv, cycles),
                   draw(rng, worse(mean, better) if i < regressed else mean, cv, cycles),
                   better) for i, (mean, better) in enumerate(pairs)]


def flagged(samples: list[Sample]) -> list[bool]:
    """Which pairs ``verdicts`` calls regressed."""
    return [judged.verdict == "regressed" for judged in verdicts(samples)]


def rates(rng: np.random.Generator, cv: float, cycles: int, trials: int) -> list[float]:
    """The five shares of the module docstring, over ``trials`` simulated trials."""
    counts = np.zeros(5)
    for _ in range(trials):
        null = study(rng, cv, cycles, regressed=0)
        one = study(rng, cv, cycles, regressed=1)
        counts += [flagged(null[:1])[0], any(flagged(null)), flagged(one[:1])[0],
                   flagged(one)[0], any(flagged(study(rng, cv, cycles, regressed=12)))]
    return list(counts / trials)


def main(trials: int) -> None:
    """Print the table of rates for every CV and number of cycles."""
    rng = np.random.default_rng(SEED)
    started = time.perf_counter()
    print(f"llem compare at default settings: {trials} trials per row, "
          f"{CONFIGURATIONS} configurations x {len(GATING)} gating metrics per study")
    print("| CV | cycles | false alarm, 1 pair | false alarm, study | detect 10 %, 1 pair "
          "| detect, 1 of 12 | detect, all 12 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for cv in CVS:
        for cycles in CYCLES:
            shares = rates(rng, cv, cycles, trials)
            print(f"| {cv:.0%} | {cycles} | " + " | ".join(f"{s:.1%}" for s in shares) + " |")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
