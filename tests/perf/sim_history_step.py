"""Simulation: false steps and detection of ``llem history``'s step rule, old and new.

Series of nightly studies of 3 cycles each, normal per-cycle values with a coefficient of
variation (CV) of 5 % (seeded). Judged by ``orchestrator.report.history.find_step`` (a majority
of the studies before the step on the before side) and by the rule it replaced (every study
before on the before side), at the default threshold (5 %). Prints, per number of nights:

- false step: no true change, any step reported;
- found: a true +10 % step (lower is better) from the middle night on, a worse step reported;
- at the step: that step reported at its true night;
- one noisy night: the same, with one night before the step drawn at +6 %, found at its night.

    .venv/bin/python tests/perf/sim_history_step.py [TRIALS]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from orchestrator.report.history import Step, _step_at, find_step

CV = 0.05
CYCLES = 3
STEP = 0.10
NOISY_NIGHT = 0.06
NIGHTS = (7, 12, 20)
SEED = 20_261_130

Rule = Callable[[Sequence[Sequence[float]]], Step | None]


def new_rule(values: Sequence[Sequence[float]]) -> Step | None:
    """The rule ``llem history`` uses."""
    return find_step(values, "lower")


def old_rule(values: Sequence[Sequence[float]]) -> Step | None:
    """The replaced rule: the earliest k where the new rule holds and *every* study before it
    lies on the before side (the new rule asks more than half of them)."""
    means = [float(np.mean(v)) for v in values]
    for k in range(1, len(values)):
        step = _at(values, k)
        if step is None:
            continue
        midpoint = (step.before_mean + step.after_mean) / 2
        up = step.after_mean > step.before_mean
        if not any((mean > midpoint) == up for mean in means[:k]):
            return step
    return None


def _at(values: Sequence[Sequence[float]], k: int) -> Step | None:
    """The new rule's step at study k exactly (every study measured), or None."""
    indices = list(range(len(values)))
    return _step_at(values, indices[:k], indices[k:], "lower", 5.0)


def night(rng: np.random.Generator, level: float) -> list[float]:
    """One night's per-cycle values around ``level``."""
    return [float(v) for v in rng.normal(level, CV * level, CYCLES)]


def series(rng: np.random.Generator, nights: int, step: bool, noisy: bool) -> list[list[float]]:
    """``nights`` nights; with ``step`` +10 % from night nights // 2 on; with ``noisy`` one
    night before it (the one before the middle of the before side) at +6 %."""
    start = nights // 2
    levels = [1.0 + (STEP if step and i >= start else 0.0) for i in range(nights)]
    if noisy:
        levels[start // 2] += NOISY_NIGHT
    return [night(rng, level) for level in levels]


def rates(rule: Rule, nights: int, trials: int) -> list[float]:
    """False step, found, at the step, and at the step with one noisy night: shares."""
    rng = np.random.default_rng(SEED + nights)
    counts = np.zeros(4)
    start = nights // 2
    for _ in range(trials):
        null = rule(series(rng, nights, step=False, noisy=False))
        found = rule(series(rng, nights, step=True, noisy=False))
        noisy = rule(series(rng, nights, step=True, noisy=True))
        counts += [null is not None, found is not None and found.worse,
                   found is not None and found.study_index == start,
                   noisy is not None and noisy.study_index == start]
    return list(counts / trials)


def main(trials: int) -> None:
    """Print the table for both rules and every number of nights."""
    started = time.perf_counter()
    print(f"llem history step rule: CV {CV:.0%}, {CYCLES} cycles a night, step +{STEP:.0%}, "
          f"{trials} trials per row")
    print("| rule | nights | false step | found | at the step | at the step, one noisy night |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rule in (("majority before (now)", new_rule), ("every before (replaced)", old_rule)):
        for nights in NIGHTS:
            shares = " | ".join(f"{share:.1%}" for share in rates(rule, nights, trials))
            print(f"| {name} | {nights} | {shares} |")
    print(f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
