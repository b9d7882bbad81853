"""``gap_until_cool``: between runs, wait until the GPUs are back near their idle temperature.

The idle reference is read once, before the study's first run. A wait is bounded by
``cool_max_s``; without GPUs there is nothing to wait for and the gap stays as configured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from harness.energy import GpuSet, discover_gpus


def read_temperatures(gpus: GpuSet, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Current temperature of every GPU (degC); GPUs without a reading are left out."""
    samples = [gpu.sample(clock()) for gpu in gpus]
    return [s.temperature_c for s in samples if s.temperature_c is not None]


@dataclass
class CoolDown:
    """Waits for GPUs to cool to within ``margin_c`` of the temperatures seen at start.

    Args:
        gpus: GPUs to watch (the host's; empty when none).
        margin_c: how close to idle counts as cool.
        max_s: upper bound on one wait.
        poll_s: how often to read temperatures.
        clock: seconds; the GPUs' clock (``time.perf_counter`` for real ones).
    """

    gpus: GpuSet
    margin_c: float
    max_s: float
    poll_s: float = 2.0
    clock: Callable[[], float] = time.perf_counter

    def __post_init__(self) -> None:
        self.idle_c = read_temperatures(self.gpus, self.clock)

    @classmethod
    def for_host(cls, indices: list[int] | None, margin_c: float, max_s: float) -> CoolDown:
        """Watch the host's NVML GPUs (the study's selection)."""
        return cls(discover_gpus(indices), margin_c, max_s)

    def is_cool(self) -> bool:
        """True when every GPU is within the margin of its idle temperature."""
        now = read_temperatures(self.gpus, self.clock)
        return all(t <= idle + self.margin_c for t, idle in zip(now, self.idle_c, strict=False))

    def wait(self, stop_waiting: Callable[[float], bool],
             on_wait: Callable[[float], None] | None = None) -> float:
        """Block until cool, ``max_s`` elapsed, or ``stop_waiting(poll_s)`` returns True.

        Returns the seconds waited.
        """
        if not self.idle_c:
            return 0.0
        start = self.clock()
        while not self.is_cool() and self.clock() - start < self.max_s:
            if on_wait is not None:
                on_wait(self.clock() - start)
            if stop_waiting(self.poll_s):
                break
        return self.clock() - start
