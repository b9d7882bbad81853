"""``timeseries.parquet``: every power sample of a run, in long format (one row per GPU per tick).

Rows are written in row groups while the run goes on. The file is written as
``timeseries.parquet.partial`` and moved to its final name only by :meth:`TimeSeriesWriter.close`
(fsync, then ``os.replace``), so a file under the final name is always complete. A Parquet file
is readable only once its footer is written: if the process is killed outright, the
``.partial`` file holds the row groups written so far but needs repair to be read.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.energy.device import GpuSample
from harness.errors import LlemError
from harness.io import atomic_replace

TIMESERIES_SCHEMA_VERSION = "1"
PARTIAL_SUFFIX = ".partial"

SCHEMA = pa.schema(
    [
        pa.field("t_s", pa.float64(), nullable=False),
        pa.field("phase", pa.string(), nullable=False),
        pa.field("gpu_index", pa.int32()),
        pa.field("power_w", pa.float64()),
        pa.field("energy_counter_j", pa.float64()),
        pa.field("temperature_c", pa.float64()),
        pa.field("sm_clock_mhz", pa.float64()),
        pa.field("mem_clock_mhz", pa.float64()),
        pa.field("gpu_util_pct", pa.float64()),
        pa.field("mem_used_mb", pa.float64()),
        pa.field("throttle_reasons", pa.string()),
    ],
    metadata={"schema_version": TIMESERIES_SCHEMA_VERSION},
)
"""Columns of ``timeseries.parquet``. A row with a null ``gpu_index`` marks a phase start."""

_SAMPLE_FIELDS = (
    "power_w",
    "energy_counter_j",
    "temperature_c",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "gpu_util_pct",
    "mem_used_mb",
)


def _sample_row(phase: str, sample: GpuSample) -> dict[str, Any]:
    row: dict[str, Any] = {"t_s": sample.t_s, "phase": phase, "gpu_index": sample.gpu_index}
    row.update({name: getattr(sample, name) for name in _SAMPLE_FIELDS})
    row["throttle_reasons"] = ",".join(sample.throttle_reasons) or None
    return row


def _marker_row(phase: str, t_s: float) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SCHEMA.names)
    row.update(t_s=t_s, phase=phase)
    return row


class TimeSeriesWriter:
    """Write samples to a Parquet file in row groups, atomically finalised on close.

    Args:
        path: final file (``.../timeseries.parquet``); the ``.partial`` sibling is written
            while the run goes on.
        row_group_rows: rows buffered before a row group is written.

    """

    def __init__(self, path: Path, row_group_rows: int = 2000) -> None:
        if row_group_rows < 1:
            raise ValueError(f"row_group_rows must be at least 1, got {row_group_rows}")
        self.path = path
        self.partial_path = path.with_name(path.name + PARTIAL_SUFFIX)
        self.row_group_rows = row_group_rows
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self.partial_path, SCHEMA)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._writer is None

    def add(self, phase: str, samples: Sequence[GpuSample]) -> None:
        """Buffer one row per sample; thread-safe (the sampler calls it from its thread).

        Raises:
            ValueError: the writer is closed.

        """
        self._append([_sample_row(phase, sample) for sample in samples])

    def mark_phase(self, phase: str, t_s: float) -> None:
        """Write a marker row (``gpu_index`` null) where ``phase`` begins, even without GPUs."""
        self._append([_marker_row(phase, t_s)])

    def _append(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            if self._writer is None:
                raise ValueError(f"{self.path.name} is closed; no more rows can be added")
            self._rows.extend(rows)
            if len(self._rows) >= self.row_group_rows:
                self._flush(self._writer)

    def _flush(self, writer: pq.ParquetWriter) -> None:
        if self._rows:
            table = pa.Table.from_pylist(self._rows, schema=SCHEMA)
            writer.write_table(table, row_group_size=len(self._rows))
            self._rows = []

    def close(self) -> None:
        """Write what is buffered, finish the file and move it to its final name.

        Safe to call twice, and meant for error paths too: what was sampled is kept.
        """
        with self._lock:
            writer = self._writer
            if writer is None:
                return
            self._writer = None
            try:
                self._flush(writer)
            finally:
                writer.close()
                atomic_replace(self.partial_path, self.path)


def read_timeseries(path: Path) -> pa.Table:
    """Read a ``timeseries.parquet`` written by :class:`TimeSeriesWriter`.

    Raises:
        LlemError: the file has no schema version or one this version of llem cannot read.

    """
    table = pq.read_table(path)
    metadata = table.schema.metadata or {}
    version = metadata.get(b"schema_version", b"").decode() or None
    if version != TIMESERIES_SCHEMA_VERSION:
        raise LlemError(
            f"{path} has time-series schema_version {version!r}; this llem reads "
            f"{TIMESERIES_SCHEMA_VERSION!r}.",
            fix="Read it with the llem version that wrote it, or rerun the experiment.",
        )
    return table
