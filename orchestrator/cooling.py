"""``gap_until_cool``: between runs, wait until the GPUs are back near their idle temperature.

The idle reference is read once, before the study's first run. A wait is bounded by
``cool_max_s``; without GPUs there is nothing to wait for and the gap stays as configured.
Every wait ends in a :class:`CoolDownRecord` (reached, cut off, ...) that the orchestrator
passes to the run in ``experiment.json`` and the harness records in the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from harness.energy import GpuSet, discover_gpus
from harness.schema.result import CoolDownRecord

NOT_REQUESTED = CoolDownRecord(outcome="not_requested")


def read_temperatures(gpus: GpuSet,
                      clock: Callable[[], float] = time.perf_counter) -> list[float | None]:
    """Current temperature of every GPU (degC), None for a GPU without a reading."""
    return [gpu.sample(clock()).temperature_c for gpu in gpus]


@dataclass
class CoolDown:
    """Waits for GPUs to cool to within ``margin_c`` of the temperatures seen at start.

    Args:
        gpus: GPUs to watch (the host's; empty when none).
        margin_c: how close to idle counts as cool (degC).
        max_s: upper bound on one wait (s).
        poll_s: how often to read temperatures (s).
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

    def _has_reference(self) -> bool:
        return any(temperature is not None for temperature in self.idle_c)

    def is_cool(self) -> bool:
        """True when every GPU with readings is within the margin of its idle temperature."""
        now = read_temperatures(self.gpus, self.clock)
        return all(t <= idle + self.margin_c for t, idle in zip(now, self.idle_c, strict=True)
                   if t is not None and idle is not None)

    def record(self, outcome: str, waited_s: float | None) -> CoolDownRecord:
        """What a wait (or its absence) amounted to, with the temperatures now."""
        return CoolDownRecord.model_validate({
            "outcome": outcome, "waited_s": waited_s, "margin_c": self.margin_c,
            "max_s": self.max_s, "gpu_indices": [gpu.index for gpu in self.gpus],
            "idle_c": self.idle_c, "temperature_c": read_temperatures(self.gpus, self.clock),
        })

    def first_run(self) -> CoolDownRecord:
        """The study's first run (or first after a resume): the reference was just read."""
        return self.record("first_run" if self._has_reference() else "no_sensor", None)

    def wait(self, stop_waiting: Callable[[float], bool],
             on_wait: Callable[[float], None] | None = None) -> CoolDownRecord:
        """Block until cool, ``max_s`` elapsed, or ``stop_waiting(poll_s)`` returns True.

        Returns:
            The outcome (reached, cut_off, interrupted, or no_sensor without any temperature)
            and the seconds waited.
        """
        if not self._has_reference():
            return self.record("no_sensor", None)
        start = self.clock()
        outcome = "reached"
        while not self.is_cool():
            if self.clock() - start >= self.max_s:
                outcome = "cut_off"
                break
            if on_wait is not None:
                on_wait(self.clock() - start)
            if stop_waiting(self.poll_s):
                outcome = "interrupted"
                break
        return self.record(outcome, self.clock() - start)
