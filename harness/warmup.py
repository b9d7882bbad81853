"""Warmup: bring the device to the state the measurement should see.

Full-length batches of the measurement's own shape, at least ``n_warmup`` of them and at least
``min_seconds`` of load, capped by ``max_seconds``. With ``until_stable`` the warmup continues
until every GPU's temperature slope over the last ``STABLE_WINDOW_S`` is within
``STABLE_SLOPE_C_PER_MIN``: the window then opens at thermal steady state, where clocks, leakage
power and fan power no longer drift.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from harness.backends.base import Backend, Request
from harness.energy import PowerSampler
from harness.energy.device import GpuSample
from harness.schema.config import WarmupConfig
from harness.schema.result import WarmupRecord

STABLE_WINDOW_S = 30.0
STABLE_SLOPE_C_PER_MIN = 0.5
MIN_POINTS = 5


def temperature_slope_c_per_min(samples: Sequence[GpuSample], gpu_index: int) -> float | None:
    """Least-squares temperature slope of one GPU (degC per minute); None with too few points."""
    points = [(s.t_s, s.temperature_c) for s in samples
              if s.gpu_index == gpu_index and s.temperature_c is not None]
    if len(points) < MIN_POINTS:
        return None
    times, temperatures = np.asarray(points, dtype=float).T
    if times[-1] - times[0] <= 0:
        return None
    slope_per_s = np.polyfit(times - times[0], temperatures, 1)[0]
    return float(slope_per_s * 60.0)


def is_stable(samples: Sequence[GpuSample], gpu_indices: Sequence[int], now_s: float) -> bool:
    """True when every GPU's slope over the last STABLE_WINDOW_S is flat enough."""
    recent = [s for s in samples if now_s - STABLE_WINDOW_S <= s.t_s <= now_s]
    if not recent or now_s - min(s.t_s for s in recent) < 0.8 * STABLE_WINDOW_S:
        return False  # not enough history yet to judge
    slopes = [temperature_slope_c_per_min(recent, index) for index in gpu_indices]
    return all(slope is not None and abs(slope) <= STABLE_SLOPE_C_PER_MIN for slope in slopes)


def _temperatures(sampler: PowerSampler, gpu_indices: Sequence[int]) -> list[float | None] | None:
    if not gpu_indices:
        return None
    latest = sampler.sample_now().samples
    by_index = {s.gpu_index: s.temperature_c for s in latest}
    return [by_index.get(index) for index in gpu_indices]


def run_warmup(
    backend: Backend,
    batch: list[Request],
    config: WarmupConfig,
    sampler: PowerSampler,
    gpu_indices: Sequence[int],
    on_batch: Callable[[int, float], None],
    clock: Callable[[], float] = time.perf_counter,
) -> WarmupRecord:
    """Run warmup batches until the configured conditions hold; return what was done."""
    temperature_start = _temperatures(sampler, gpu_indices)
    start = clock()
    batches = 0
    stable: bool | None = None
    while clock() - start < config.max_seconds:
        enough = batches >= config.n_warmup and clock() - start >= config.min_seconds
        if enough and not config.until_stable:
            break
        if enough and not gpu_indices:
            break  # nothing to read a temperature from: stability cannot be assessed
        if enough and is_stable(sampler.samples(), gpu_indices, clock()):
            stable = True
            break
        backend.generate(batch)
        batches += 1
        on_batch(batches, clock() - start)
    backend.synchronize()
    if config.until_stable and gpu_indices and stable is None:
        stable = False  # max_seconds reached first
    return WarmupRecord(
        batches=batches,
        duration_s=clock() - start,
        temperature_start_c=temperature_start,
        temperature_end_c=_temperatures(sampler, gpu_indices),
        stable=stable,
    )
