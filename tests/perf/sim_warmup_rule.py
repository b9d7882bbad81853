"""Simulation: how much temperature rise is left when the steady-state rule says "stable".

First-order warm-ups, ``start + rise x (1 - exp(-t / tau))``, read every 100 ms in whole
degrees (truncated or rounded; with and without 0.3 degC of sensor noise; three starting
offsets), are judged every 2 s by ``harness.warmup.is_stable`` and by the rule it replaced (a
30 s least-squares slope within 0.5 degC/min). Prints, per time constant, the largest rise still
to come at the first "stable" verdict of each rule and when the new rule first held. Power is
flat, so only the temperature criteria decide.

    .venv/bin/python tests/perf/sim_warmup_rule.py
"""

from __future__ import annotations

import bisect

import numpy as np

from harness.energy.device import GpuSample
from harness.warmup import STABLE_HISTORY_S, is_stable

SAMPLE_S = 0.1
JUDGE_EVERY_S = 2.0
RISE_C = 45.0
UNTIL_S = 1800.0


def readings(start_c: float, tau_s: float, rounding: str, noise_c: float,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sample times and whole-degree readings of one warm-up."""
    times_s = np.arange(0.0, UNTIL_S, SAMPLE_S)
    true_c = start_c + RISE_C * (1 - np.exp(-times_s / tau_s))
    noisy_c = true_c + rng.normal(0.0, noise_c, times_s.size) if noise_c else true_c
    return times_s, np.floor(noisy_c) if rounding == "truncated" else np.round(noisy_c)


def old_rule(times_s: np.ndarray, temperatures_c: np.ndarray, now_s: float) -> bool:
    """The replaced rule: 30 s least-squares slope within 0.5 degC/min, 24 s of history."""
    if now_s < 24.0:
        return False
    recent = (times_s >= now_s - 30.0) & (times_s <= now_s)
    return abs(np.polyfit(times_s[recent], temperatures_c[recent], 1)[0] * 60.0) <= 0.5


def new_rule(samples: list[GpuSample], times_s: np.ndarray, now_s: float) -> bool:
    """``harness.warmup.is_stable`` on the samples it would see, 1 s batches."""
    first = bisect.bisect_left(times_s, now_s - STABLE_HISTORY_S)
    last = bisect.bisect_right(times_s, now_s)
    edges = [(float(t), float(t) + 1.0) for t in range(int(now_s))]
    return is_stable(samples[first:last], edges, [0], now_s, since_s=0.0)


def first_verdicts(times_s: np.ndarray, temperatures_c: np.ndarray) -> tuple[float, float]:
    """When each rule first says stable (s); UNTIL_S when never."""
    samples = [GpuSample(gpu_index=0, t_s=float(t), power_w=300.0, energy_counter_j=None,
                         temperature_c=float(c)) for t, c in zip(times_s, temperatures_c,
                                                                 strict=True)]
    judged_s = np.arange(JUDGE_EVERY_S, UNTIL_S, JUDGE_EVERY_S)
    old_s = next((t for t in judged_s if old_rule(times_s, temperatures_c, t)), UNTIL_S)
    new_s = next((t for t in judged_s if new_rule(samples, times_s, t)), UNTIL_S)
    return float(old_s), float(new_s)


def main() -> None:
    """Print the worst remaining rise per time constant for both rules."""
    rng = np.random.default_rng(0)
    print("tau_min  old_rule_worst_remaining_C  new_rule_worst_remaining_C  new_rule_stable_at_s")
    for tau_min in (1, 2, 3, 4, 5, 6):
        tau_s = 60.0 * tau_min
        old_worst = new_worst = 0.0
        new_times: list[float] = []
        for rounding in ("truncated", "rounded"):
            for noise_c in (0.0, 0.3):
                for start_c in (30.0, 30.3, 30.7):
                    times_s, temperatures_c = readings(start_c, tau_s, rounding, noise_c, rng)
                    old_s, new_s = first_verdicts(times_s, temperatures_c)
                    old_worst = max(old_worst, RISE_C * np.exp(-old_s / tau_s))
                    new_worst = max(new_worst, RISE_C * np.exp(-new_s / tau_s))
                    new_times.append(new_s)
        print(f"{tau_min:7d}  {old_worst:26.1f}  {new_worst:26.1f}  "
              f"{min(new_times):.0f}-{max(new_times):.0f}")


if __name__ == "__main__":
    main()
