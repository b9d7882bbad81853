"""``timeseries.parquet``: every power sample of a run, in long format (one row per GPU per tick).

While the run goes on, rows go to an Arrow IPC stream, ``timeseries.arrows.partial``, one record
batch at a time, each flushed to the operating system as soon as it is written: at least every
``flush_interval_s`` (1 s), at every phase marker, and whenever ``row_group_rows`` rows are
buffered. An IPC stream can be read back up to its last complete batch, so a process killed
outright (SIGKILL, the OOM killer, a removed container) loses at most the last second of samples
and nothing before it.

:meth:`TimeSeriesWriter.close` converts the stream into ``timeseries.parquet`` (written to a
temporary sibling, fsynced, moved into place) and removes the stream; a file under the final
name is always complete Parquet. After a kill, :func:`recover_timeseries` (the orchestrator
calls it once the run has ended) does the same conversion with whatever complete batches the
stream holds and marks the file ``partial``; :func:`read_timeseries` reads a stream that was
never converted without touching it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.energy.device import GpuSample
from harness.errors import LlemError
from harness.io import atomic_open

TIMESERIES_SCHEMA_VERSION = "1"
STREAM_SUFFIX = ".arrows.partial"
PARTIAL_KEY = b"partial"
"""File metadata key: ``"true"`` when the file was recovered from the stream of a writer that
never closed (the process was killed), ``"false"`` when the writer finished it."""

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


def stream_path_for(path: Path) -> Path:
    """The stream written while the run goes on (``timeseries.arrows.partial``)."""
    return path.with_name(path.stem + STREAM_SUFFIX)


class TimeSeriesWriter:
    """Stream samples to ``timeseries.arrows.partial``; on close, convert it to Parquet.

    Args:
        path: final file (``.../timeseries.parquet``).
        row_group_rows: rows per Parquet row group; also the most rows buffered before a
            batch is written to the stream.
        flush_interval_s: the longest time rows stay buffered in memory (s): what a kill can
            lose.
        clock: returns seconds; decides when ``flush_interval_s`` has passed.

    """

    def __init__(
        self,
        path: Path,
        row_group_rows: int = 2000,
        flush_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if row_group_rows < 1:
            raise ValueError(f"row_group_rows must be at least 1, got {row_group_rows}")
        self.path = path
        self.stream_path = stream_path_for(path)
        self.row_group_rows = row_group_rows
        self.flush_interval_s = flush_interval_s
        self._clock = clock
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = open(self.stream_path, "wb")  # noqa: SIM115 - kept open
        self._stream = pa.ipc.new_stream(self._file, SCHEMA)
        self._file.flush()  # the schema: a stream killed before its first batch still reads
        self._flushed_at = clock()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._file is None

    def add(self, phase: str, samples: Sequence[GpuSample]) -> None:
        """Buffer one row per sample; thread-safe (the sampler calls it from its thread).

        Raises:
            ValueError: the writer is closed.

        """
        self._append([_sample_row(phase, sample) for sample in samples], force=False)

    def mark_phase(self, phase: str, t_s: float) -> None:
        """Write a marker row (``gpu_index`` null) where ``phase`` begins, even without GPUs.

        The marker and every row buffered before it reach the stream at once.
        """
        self._append([_marker_row(phase, t_s)], force=True)

    def _append(self, rows: list[dict[str, Any]], force: bool) -> None:
        with self._lock:
            if self._file is None:
                raise ValueError(f"{self.path.name} is closed; no more rows can be added")
            self._rows.extend(rows)
            due = self._clock() - self._flushed_at >= self.flush_interval_s
            if force or due or len(self._rows) >= self.row_group_rows:
                self._flush()

    def _flush(self) -> None:
        if self._rows and self._file is not None:
            self._stream.write_batch(pa.RecordBatch.from_pylist(self._rows, schema=SCHEMA))
            self._file.flush()
            self._rows = []
        self._flushed_at = self._clock()

    def close(self) -> None:
        """Write what is buffered, convert the stream to ``timeseries.parquet``, remove it.

        Safe to call twice, and meant for error paths too: what was sampled is kept.
        """
        with self._lock:
            if self._file is None:
                return
            try:
                self._flush()
                self._stream.close()
            finally:
                self._file.close()
                self._file = None
                _convert(self.stream_path, self.path, self.row_group_rows, partial=False)


def _read_stream(stream_path: Path) -> pa.Table:
    """Every complete batch of a stream, however it ends (closed, cut short, cut mid-batch).

    The table keeps the stream's own schema and metadata (its ``schema_version``); a stream
    cut inside its schema gives an empty table of :data:`SCHEMA`.
    """
    schema, batches = SCHEMA, []
    # A schema cut short leaves no batches; a batch cut short ends the list.
    with pa.OSFile(str(stream_path)) as source, contextlib.suppress(pa.ArrowInvalid, OSError):
        reader = pa.ipc.open_stream(source)
        schema = reader.schema
        for batch in reader:
            batches.append(batch)
    return pa.Table.from_batches(batches, schema=schema)


def _with_partial(table: pa.Table, partial: bool) -> pa.Table:
    metadata = {**(table.schema.metadata or {}), PARTIAL_KEY: str(partial).lower().encode()}
    return table.replace_schema_metadata(metadata)


def _convert(stream_path: Path, path: Path, row_group_rows: int, partial: bool) -> None:
    """Write the stream's complete batches to ``path`` atomically, then remove the stream."""
    table = _with_partial(_read_stream(stream_path), partial)
    with atomic_open(path, "wb") as handle:
        pq.write_table(table, handle, row_group_size=row_group_rows)
    stream_path.unlink()


def recover_timeseries(path: Path, row_group_rows: int = 2000) -> bool:
    """Turn the stream a killed writer left behind into ``timeseries.parquet``, marked partial.

    Call it only once the process that wrote the stream has ended. A stream next to a finished
    ``timeseries.parquet`` (the writer was killed between the two steps of its close) is a
    leftover and is removed.

    Args:
        path: the final file (``.../timeseries.parquet``).
        row_group_rows: rows per row group of the recovered file.

    Returns:
        whether a file was recovered.

    """
    stream_path = stream_path_for(path)
    if not stream_path.exists():
        return False
    if path.exists():
        stream_path.unlink()
        return False
    _convert(stream_path, path, row_group_rows, partial=True)
    return True


def is_partial(table: pa.Table) -> bool:
    """Whether a table from :func:`read_timeseries` lacks the end of its run (writer killed)."""
    return (table.schema.metadata or {}).get(PARTIAL_KEY) == b"true"


def read_timeseries(path: Path) -> pa.Table:
    """Read a ``timeseries.parquet`` written by :class:`TimeSeriesWriter`.

    When only the stream exists (the run is still going, or was killed and not yet
    recovered), its complete batches are returned, marked partial; the stream is not changed.

    Raises:
        LlemError: the file (or stream) has no schema version or one this version of llem
            cannot read.

    """
    stream_path = stream_path_for(path)
    if not path.exists() and stream_path.exists():
        table = _with_partial(_read_stream(stream_path), partial=True)
    else:
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
