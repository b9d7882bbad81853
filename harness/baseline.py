"""Idle power per GPU, measured before the model loads and cached per GPU UUID with a TTL.

The cache is a directory of small JSON files, one per GPU, written atomically. The orchestrator
puts it under the study directory and mounts it into every container, so the runs of one study
share it and a study does not spend ``baseline.duration_s`` on every run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.energy import EnergyMeter, GpuSet
from harness.io import write_json
from harness.paths import sanitize
from harness.schema.config import BaselineConfig
from harness.schema.result import SCHEMA_VERSION, BaselineRecord


@dataclass(frozen=True)
class CachedBaseline:
    """One GPU's idle power as measured earlier.

    Attributes:
        uuid: the GPU's UUID.
        power_w: mean idle power (W).
        duration_s: length of the idle measurement (s).
        measured_at: when it was measured (epoch s).
    """

    uuid: str
    power_w: float
    duration_s: float
    measured_at: float

    def age_s(self, now: float | None = None) -> float:
        """Seconds since the measurement."""
        return (time.time() if now is None else now) - self.measured_at


class BaselineCache:
    """Idle power per GPU UUID, valid for ``ttl_s`` seconds.

    Args:
        directory: where the entries live (created on first write).
        ttl_s: how long an entry may be reused; 0 disables reuse.
    """

    def __init__(self, directory: Path, ttl_s: float) -> None:
        self.directory = directory
        self.ttl_s = ttl_s

    def _path(self, uuid: str) -> Path:
        return self.directory / f"{sanitize(uuid)}.json"

    def get(self, uuid: str, now: float | None = None) -> CachedBaseline | None:
        """The entry for ``uuid`` if present, readable and younger than the TTL."""
        try:
            data = json.loads(self._path(uuid).read_text(encoding="utf-8"))
            entry = CachedBaseline(uuid=data["uuid"], power_w=float(data["power_w"]),
                                   duration_s=float(data["duration_s"]),
                                   measured_at=float(data["measured_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or damaged: measure again rather than trust it
        if entry.uuid != uuid or not 0 <= entry.age_s(now) < self.ttl_s:
            return None
        return entry

    def get_all(self, uuids: list[str], now: float | None = None) -> list[CachedBaseline] | None:
        """Entries for every GPU, or None when any one is missing or expired."""
        entries = [self.get(uuid, now) for uuid in uuids]
        if any(entry is None for entry in entries):
            return None
        return [entry for entry in entries if entry is not None]

    def put(self, uuid: str, power_w: float, duration_s: float,
            now: float | None = None) -> CachedBaseline:
        """Store a fresh measurement."""
        entry = CachedBaseline(uuid, power_w, duration_s, time.time() if now is None else now)
        write_json(self._path(uuid), {"schema_version": SCHEMA_VERSION, **entry.__dict__})
        return entry


def measure_baseline(
    gpus: GpuSet,
    meter: EnergyMeter,
    config: BaselineConfig,
    cache: BaselineCache | None,
    sleep: Callable[[float], None] = time.sleep,
) -> BaselineRecord:
    """Idle power per GPU: from the cache when every GPU has a live entry, else measured.

    Measured as the energy counter delta over ``config.duration_s`` of doing nothing, divided
    by the time: the counter, not sampled power, for the same reason as the main window.
    """
    uuids = [gpu.info().uuid for gpu in gpus]
    cached = cache.get_all(uuids) if cache is not None else None
    if cached is not None:
        return BaselineRecord(
            power_w=[entry.power_w for entry in cached],
            duration_s=min(entry.duration_s for entry in cached),
            provenance="cached",
            age_s=max(entry.age_s() for entry in cached),
        )
    start = meter.mark()
    sleep(config.duration_s)
    reading = meter.between(start, meter.mark())
    power_w = [energy_j / reading.duration_s for energy_j in reading.energy_per_gpu_j or []]
    if cache is not None:
        for uuid, power in zip(uuids, power_w, strict=True):
            cache.put(uuid, power, reading.duration_s)
    return BaselineRecord(power_w=power_w, duration_s=reading.duration_s, provenance="fresh",
                          age_s=0.0)
