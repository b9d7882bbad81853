"""Idle power per GPU, measured before the model loads and cached with a TTL.

An entry is keyed by everything that sets a GPU's idle power and can be read: its UUID, the
driver version, the enforced power limit, persistence mode, the applications clocks, auto
boost, and the ``TEMPERATURE_BAND_C`` (5 degC) band its temperature is in when the baseline is
taken (leakage power grows with temperature). A change in any of them means the entry is not
used and idle power is measured again. Locked clocks (``nvidia-smi -lgc`` / ``-lmc``) have no
NVML getter and are not in the key.

The cache is a directory of small JSON files, one per GPU and key, written atomically. The
orchestrator puts it under the study directory and mounts it into every container, so the runs
of one study share it and a study does not spend ``baseline.duration_s`` on every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.energy import EnergyMeter, GpuSet
from harness.energy.meter import EnergyReading, Mark
from harness.errors import EnergyError
from harness.io import write_json
from harness.paths import sanitize
from harness.schema.config import BaselineConfig
from harness.schema.result import SCHEMA_VERSION, BaselineRecord, GpuInfo

TEMPERATURE_BAND_C = 5.0
"""Width of the temperature bands of the cache key (degC): [35, 40), [40, 45), ..."""


@dataclass(frozen=True)
class BaselineKey:
    """What one GPU's idle power depends on; an entry is used only when all of it matches.

    Attributes:
        uuid: the GPU's UUID.
        driver_version: NVIDIA driver version.
        power_limit_w: enforced power limit (W).
        persistence_mode: persistence mode on.
        applications_graphics_clock_mhz: applications clock target for graphics (MHz).
        applications_memory_clock_mhz: applications clock target for memory (MHz).
        auto_boost_enabled: auto boosted clocks on.
        temperature_band_c: lower edge of the TEMPERATURE_BAND_C band the GPU's temperature
            was in (degC); None without a reading.
    """

    uuid: str
    driver_version: str | None
    power_limit_w: float | None
    persistence_mode: bool | None
    applications_graphics_clock_mhz: float | None
    applications_memory_clock_mhz: float | None
    auto_boost_enabled: bool | None
    temperature_band_c: float | None

    @classmethod
    def of(cls, info: GpuInfo, driver_version: str | None,
           temperature_c: float | None) -> BaselineKey:
        """The key of a GPU as it is now."""
        return cls(
            uuid=info.uuid,
            driver_version=driver_version,
            power_limit_w=info.power_limit_w,
            persistence_mode=info.persistence_mode,
            applications_graphics_clock_mhz=info.applications_graphics_clock_mhz,
            applications_memory_clock_mhz=info.applications_memory_clock_mhz,
            auto_boost_enabled=info.auto_boost_enabled,
            temperature_band_c=temperature_band_c(temperature_c),
        )

    def digest(self) -> str:
        """A short stable hash of every field (names the entry's file)."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def temperature_band_c(temperature_c: float | None) -> float | None:
    """Lower edge of the band ``temperature_c`` lies in (degC), or None without a reading."""
    if temperature_c is None:
        return None
    return math.floor(temperature_c / TEMPERATURE_BAND_C) * TEMPERATURE_BAND_C


@dataclass(frozen=True)
class CachedBaseline:
    """One GPU's idle power as measured earlier.

    Attributes:
        key: the conditions it was measured under.
        power_w: mean idle power (W).
        duration_s: length of the idle measurement (s).
        measured_at: when it was measured (epoch s).
    """

    key: BaselineKey
    power_w: float
    duration_s: float
    measured_at: float

    def age_s(self, now: float | None = None) -> float:
        """Seconds since the measurement."""
        return (time.time() if now is None else now) - self.measured_at


def _entry(data: Any) -> CachedBaseline:
    """Parse a stored entry; raises KeyError, TypeError or ValueError when it is damaged."""
    return CachedBaseline(key=BaselineKey(**data["key"]), power_w=float(data["power_w"]),
                          duration_s=float(data["duration_s"]),
                          measured_at=float(data["measured_at"]))


class BaselineCache:
    """Idle power per GPU and key, valid for ``ttl_s`` seconds.

    Args:
        directory: where the entries live (created on first write).
        ttl_s: how long an entry may be reused; 0 disables reuse.
    """

    def __init__(self, directory: Path, ttl_s: float) -> None:
        self.directory = directory
        self.ttl_s = ttl_s

    @staticmethod
    def file_name(key: BaselineKey) -> str:
        """The entry's file name: ``<uuid>-<digest of the key>.json``."""
        return f"{sanitize(key.uuid)}-{key.digest()}.json"

    def get(self, key: BaselineKey, now: float | None = None) -> CachedBaseline | None:
        """The entry for ``key`` if present, readable, of that very key and within the TTL."""
        try:
            text = (self.directory / self.file_name(key)).read_text(encoding="utf-8")
            entry = _entry(json.loads(text))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or damaged: measure again rather than trust it
        if entry.key != key or not 0 <= entry.age_s(now) < self.ttl_s:
            return None
        return entry

    def get_all(self, keys: Sequence[BaselineKey],
                now: float | None = None) -> list[CachedBaseline] | None:
        """Entries for every GPU, or None when any one is missing, expired or keyed otherwise."""
        entries = [self.get(key, now) for key in keys]
        if any(entry is None for entry in entries):
            return None
        return [entry for entry in entries if entry is not None]

    def entries(self) -> list[CachedBaseline]:
        """Every readable entry in the directory, expired or not, sorted by file name."""
        entries = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                entries.append(_entry(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return entries

    def put(self, key: BaselineKey, power_w: float, duration_s: float,
            now: float | None = None) -> CachedBaseline:
        """Store a fresh measurement."""
        entry = CachedBaseline(key, power_w, duration_s, time.time() if now is None else now)
        write_json(self.directory / self.file_name(key), {
            "schema_version": SCHEMA_VERSION, "key": dataclasses.asdict(key),
            "power_w": power_w, "duration_s": duration_s, "measured_at": entry.measured_at,
        })
        return entry


def _temperatures(gpus: GpuSet, meter: EnergyMeter) -> list[float | None]:
    """Every GPU's temperature now (degC), through one sampler tick (kept in the series)."""
    by_index = {s.gpu_index: s.temperature_c for s in meter.sampler.sample_now().samples}
    return [by_index.get(gpu.index) for gpu in gpus]


def _unread_gpus(gpus: GpuSet, meter: EnergyMeter, start: Mark, end: Mark) -> list[int]:
    """Indices of GPUs with neither a counter at both marks nor a power sample between."""
    powered = {s.gpu_index for s in meter.sampler.samples_between(start.t_s, end.t_s)
               if s.power_w is not None}
    return [gpu.index for position, gpu in enumerate(gpus)
            if (start.counters_j[position] is None or end.counters_j[position] is None)
            and gpu.index not in powered]


def _idle_power_w(gpus: GpuSet, meter: EnergyMeter, start: Mark, end: Mark,
                  reading: EnergyReading) -> list[float]:
    """Energy over time per GPU (W).

    Raises:
        EnergyError: a GPU produced no reading during the baseline (its index is named).
    """
    if reading.energy_per_gpu_j is None or reading.duration_s <= 0:
        unread = _unread_gpus(gpus, meter, start, end) or [gpu.index for gpu in gpus]
        names = ", ".join(f"GPU {index}" for index in unread)
        raise EnergyError(
            f"{names} produced no energy-counter or power reading during the "
            f"{reading.duration_s:.1f} s idle baseline, so idle power is unknown",
            fix="check the GPU with nvidia-smi (a GPU whose power cannot be read cannot be "
            "measured), or set baseline.enabled: false (energy_dynamic_j is then null)",
        )
    return [energy_j / reading.duration_s for energy_j in reading.energy_per_gpu_j]


def measure_baseline(
    gpus: GpuSet,
    meter: EnergyMeter,
    config: BaselineConfig,
    cache: BaselineCache | None,
    sleep: Callable[[float], None] = time.sleep,
) -> BaselineRecord:
    """Idle power per GPU: cached when every GPU has a live entry of its key, else measured.

    Measured as the energy counter delta over ``config.duration_s`` of doing nothing, divided
    by the time: the counter, not sampled power, for the same reason as the main window.

    Raises:
        EnergyError: a GPU produced no counter or power reading during the measurement.
    """
    temperatures_c = _temperatures(gpus, meter)
    keys = [BaselineKey.of(gpu.info(), gpus.driver_version, temperature_c)
            for gpu, temperature_c in zip(gpus, temperatures_c, strict=True)]
    cached = cache.get_all(keys) if cache is not None else None
    if cached is not None:
        return BaselineRecord(
            power_w=[entry.power_w for entry in cached],
            duration_s=min(entry.duration_s for entry in cached),
            provenance="cached",
            age_s=max(entry.age_s() for entry in cached),
            temperature_c=temperatures_c,
        )
    busy_before = _busy_gpus(gpus)
    start = meter.mark()
    sleep(config.duration_s)
    end = meter.mark()
    reading = meter.between(start, end)
    power_w = _idle_power_w(gpus, meter, start, end, reading)
    busy = sorted(set(busy_before) | set(_busy_gpus(gpus))
                  | set(_active_gpus(gpus, meter, start.t_s, end.t_s)))
    if cache is not None and not busy:  # a busy GPU's "idle" must never serve later runs
        for key, power in zip(keys, power_w, strict=True):
            cache.put(key, power, reading.duration_s)
    return BaselineRecord(power_w=power_w, duration_s=reading.duration_s, provenance="fresh",
                          age_s=0.0, temperature_c=temperatures_c, idle_verified=not busy,
                          busy_gpus=busy)


def _busy_gpus(gpus: GpuSet) -> list[int]:
    """GPUs running another process's compute (this process has none yet: nothing loaded)."""
    own_pid = os.getpid()
    return [gpu.index for gpu in gpus if any(pid != own_pid for pid in gpu.compute_processes())]


def _active_gpus(gpus: GpuSet, meter: EnergyMeter, t0_s: float, t1_s: float) -> list[int]:
    """GPUs whose utilisation was above zero while their idle power was being measured."""
    samples = meter.sampler.samples_between(t0_s, t1_s)
    return sorted({s.gpu_index for s in samples if s.gpu_util_pct})
