"""A run's power and temperature over time, from its ``timeseries.parquet``, ready to plot.

The file has one row per GPU per sampler tick and a marker row (``gpu_index`` null) where each
protocol phase begins. Times are shown from the run's first marker. A long run is reduced to at
most ``max_points`` points per GPU and quantity by averaging consecutive samples in equal-count
buckets (a mean keeps the energy under the curve; a peak shorter than a bucket is smoothed),
so that a report of an hour-long study stays a few megabytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.timeseries import is_partial, read_timeseries, stream_path_for

MAX_POINTS = 400
"""Points per GPU and quantity plotted per run: enough to show every phase of a run."""


@dataclass(frozen=True)
class PhaseSpan:
    """One protocol phase of a run, in seconds from the run's first marker."""

    phase: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Series:
    """One quantity of one GPU over time (seconds from the run's first marker)."""

    gpu_index: int
    t_s: list[float]
    values: list[float]


@dataclass
class RunTrace:
    """What a run's time series holds for the report.

    Attributes:
        phases: every phase with its start and end.
        power_w: power per measured GPU (W), downsampled.
        temperature_c: temperature per measured GPU (degC), downsampled.
        samples: GPU sample rows in the file (before downsampling).
        partial: the writer was killed: the series lacks the run's end.
    """

    phases: list[PhaseSpan] = field(default_factory=list)
    power_w: list[Series] = field(default_factory=list)
    temperature_c: list[Series] = field(default_factory=list)
    samples: int = 0
    partial: bool = False


def downsample(t_s: np.ndarray, values: np.ndarray,
               max_points: int) -> tuple[list[float], list[float]]:
    """Means of equal-count buckets of consecutive samples; at most ``max_points`` points."""
    if len(values) <= max_points:
        return t_s.tolist(), values.tolist()
    starts = np.linspace(0, len(values), max_points + 1).astype(int)[:-1]
    counts = np.diff(np.append(starts, len(values)))
    return ((np.add.reduceat(t_s, starts) / counts).tolist(),
            (np.add.reduceat(values, starts) / counts).tolist())


def _phases(markers: pa.Table, end_s: float, origin_s: float) -> list[PhaseSpan]:
    times = markers.column("t_s").to_pylist()
    names = markers.column("phase").to_pylist()
    ends = [*times[1:], max(end_s, times[-1])]
    return [PhaseSpan(name, start - origin_s, stop - origin_s)
            for name, start, stop in zip(names, times, ends, strict=True)]


def _series(rows: pa.Table, column: str, origin_s: float, max_points: int) -> list[Series]:
    found = []
    indices = rows.column("gpu_index").to_numpy()
    for gpu_index in sorted(set(indices.tolist())):
        mine = rows.filter(pc.and_(pc.equal(rows.column("gpu_index"), gpu_index),
                                           pc.is_valid(rows.column(column))))
        if mine.num_rows:
            t_s, values = downsample(mine.column("t_s").to_numpy() - origin_s,
                                     mine.column(column).to_numpy(), max_points)
            found.append(Series(int(gpu_index), t_s, values))
    return found


def read_trace(run_dir: Path, max_points: int = MAX_POINTS) -> RunTrace | None:
    """The run's trace, or None when it wrote no time series (a killed run's stream counts)."""
    path = run_dir / "timeseries.parquet"
    if not path.exists() and not stream_path_for(path).exists():
        return None
    table = read_timeseries(path).sort_by("t_s")
    if table.num_rows == 0:
        return RunTrace(partial=is_partial(table))
    is_marker = pc.is_null(table.column("gpu_index"))
    markers, rows = table.filter(is_marker), table.filter(pc.invert(is_marker))
    origin_s = float(table.column("t_s")[0].as_py())
    end_s = float(table.column("t_s")[-1].as_py())
    return RunTrace(
        phases=_phases(markers, end_s, origin_s) if markers.num_rows else [],
        power_w=_series(rows, "power_w", origin_s, max_points),
        temperature_c=_series(rows, "temperature_c", origin_s, max_points),
        samples=rows.num_rows, partial=is_partial(table))
