import math
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.energy.device import GpuSample, GpuSet
from harness.energy.sampler import PowerSampler
from harness.errors import LlemError
from harness.testing import FakeClock, FakeGpu
from harness.timeseries import TimeSeriesWriter, is_partial, read_timeseries, recover_timeseries

COLUMNS = {
    "t_s": pa.float64(),
    "phase": pa.string(),
    "gpu_index": pa.int32(),
    "power_w": pa.float64(),
    "energy_counter_j": pa.float64(),
    "temperature_c": pa.float64(),
    "sm_clock_mhz": pa.float64(),
    "mem_clock_mhz": pa.float64(),
    "gpu_util_pct": pa.float64(),
    "mem_used_mb": pa.float64(),
    "throttle_reasons": pa.string(),
}


def sample(t_s, gpu_index=0, reasons=()):
    return GpuSample(gpu_index=gpu_index, t_s=t_s, power_w=100.0 + t_s, energy_counter_j=t_s * 10,
                     temperature_c=50.0, sm_clock_mhz=1980.0, mem_clock_mhz=2619.0,
                     gpu_util_pct=99.0, mem_used_mb=2048.0, throttle_reasons=reasons)


def test_columns_and_types_are_exactly_the_documented_ones(tmp_path):
    writer = TimeSeriesWriter(tmp_path / "timeseries.parquet")
    writer.add("measure", [sample(1.0)])
    writer.close()
    table = read_timeseries(tmp_path / "timeseries.parquet")
    assert {f.name: f.type for f in table.schema} == COLUMNS
    assert table.schema.names == list(COLUMNS)
    assert table.schema.metadata[b"schema_version"] == b"1"


def test_sample_rows_carry_phase_values_and_joined_throttle_reasons(tmp_path):
    path = tmp_path / "timeseries.parquet"
    writer = TimeSeriesWriter(path)
    writer.add("warmup", [sample(1.0, 0, ("sw_power_cap", "hw_slowdown")), sample(1.0, 1)])
    writer.close()
    rows = read_timeseries(path).to_pylist()
    assert [r["gpu_index"] for r in rows] == [0, 1]
    assert rows[0]["phase"] == "warmup"
    assert rows[0]["power_w"] == 101.0
    assert rows[0]["throttle_reasons"] == "sw_power_cap,hw_slowdown"
    assert rows[1]["throttle_reasons"] is None


def test_phase_markers_are_written_without_any_gpu(tmp_path):
    path = tmp_path / "timeseries.parquet"
    writer = TimeSeriesWriter(path)
    writer.mark_phase("baseline", 0.5)
    writer.mark_phase("measure", 2.0)
    writer.close()
    rows = read_timeseries(path).to_pylist()
    assert [(r["phase"], r["t_s"], r["gpu_index"]) for r in rows] == [
        ("baseline", 0.5, None), ("measure", 2.0, None)]
    assert rows[0]["power_w"] is None


def test_rows_are_written_in_row_groups_of_the_given_size(tmp_path):
    path = tmp_path / "timeseries.parquet"
    writer = TimeSeriesWriter(path, row_group_rows=3)
    for t in range(7):
        writer.add("measure", [sample(float(t))])
    writer.close()
    metadata = pq.ParquetFile(path).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [3, 3, 1]
    assert read_timeseries(path).column("t_s").to_pylist() == [float(t) for t in range(7)]


def test_rows_stream_until_closed_then_become_parquet_under_the_final_name(tmp_path):
    path = tmp_path / "timeseries.parquet"
    writer = TimeSeriesWriter(path, row_group_rows=2)
    writer.add("measure", [sample(1.0), sample(1.0, 1)])
    assert writer.stream_path == tmp_path / "timeseries.arrows.partial"
    assert writer.stream_path.exists()
    assert not path.exists()
    writer.close()
    assert [p.name for p in tmp_path.iterdir()] == ["timeseries.parquet"]
    table = read_timeseries(path)
    assert table.num_rows == 2 and not is_partial(table)
    assert table.schema.metadata[b"partial"] == b"false"


def test_close_is_idempotent_and_keeps_rows_on_an_error_path(tmp_path):
    path = tmp_path / "timeseries.parquet"
    writer = TimeSeriesWriter(path)
    with pytest.raises(RuntimeError):
        try:
            writer.add("load", [sample(1.0)])
            raise RuntimeError("backend crashed")
        finally:
            writer.close()
    writer.close()
    assert writer.closed
    assert read_timeseries(path).num_rows == 1


def test_adding_after_close_is_an_error(tmp_path):
    writer = TimeSeriesWriter(tmp_path / "timeseries.parquet")
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.add("measure", [sample(1.0)])


def test_concurrent_adds_lose_no_rows(tmp_path):
    path = tmp_path / "timeseries.parquet"
    writer = TimeSeriesWriter(path, row_group_rows=7)

    def add_many(gpu_index):
        for t in range(200):
            writer.add("measure", [sample(float(t), gpu_index)])

    threads = [threading.Thread(target=add_many, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.mark_phase("write", 999.0)
    writer.close()
    assert read_timeseries(path).num_rows == 801


def test_sampler_sink_writes_labelled_ticks(tmp_path):
    path = tmp_path / "timeseries.parquet"
    clock = FakeClock()
    writer = TimeSeriesWriter(path)
    gpus = GpuSet([FakeGpu([(0.0, 100.0)], index=0, clock=clock),
                   FakeGpu([(0.0, 200.0)], index=1, clock=clock)])
    sampler = PowerSampler(gpus, interval_ms=100, clock=clock, sink=writer.add, phase="baseline")
    sampler.sample_now()
    sampler.set_phase("measure")
    clock.advance(0.1)
    sampler.sample_now()
    writer.close()
    rows = read_timeseries(path).to_pylist()
    assert [(r["phase"], r["gpu_index"], r["power_w"]) for r in rows] == [
        ("baseline", 0, 100.0), ("baseline", 1, 200.0), ("measure", 0, 100.0),
        ("measure", 1, 200.0)]


@pytest.mark.parametrize("metadata", [{"schema_version": "99"}, None])
def test_reading_an_unknown_schema_version_is_a_clear_error(tmp_path, metadata):
    path = tmp_path / "timeseries.parquet"
    schema = pa.schema([pa.field("t_s", pa.float64())], metadata=metadata)
    pq.write_table(pa.table({"t_s": [1.0]}, schema=schema), path)
    with pytest.raises(LlemError, match="schema_version"):
        read_timeseries(path)


def test_row_group_size_must_be_positive(tmp_path):
    with pytest.raises(ValueError):
        TimeSeriesWriter(tmp_path / "timeseries.parquet", row_group_rows=0)


# A killed writer: close() never runs, the stream is all there is.


def killed_writer(path, batches, rows_per_batch=2):
    """A writer that wrote ``batches`` full batches and one row more, then was never closed.

    Returns the stream's size after each batch (bytes).
    """
    writer = TimeSeriesWriter(path, row_group_rows=rows_per_batch, flush_interval_s=math.inf,
                              clock=FakeClock())
    sizes = [writer.stream_path.stat().st_size]
    for b in range(batches):
        writer.add("measure", [sample(float(b), gpu) for gpu in range(rows_per_batch)])
        sizes.append(writer.stream_path.stat().st_size)
    writer.add("measure", [sample(99.0)])  # buffered only: lost with the process
    writer._file.close()  # the process dies: the kernel closes its files, nothing else runs
    return writer, sizes


def test_stream_of_a_writer_never_closed_reads_back_every_flushed_batch(tmp_path):
    path = tmp_path / "timeseries.parquet"
    writer, sizes = killed_writer(path, batches=3)
    assert sizes == sorted(set(sizes)), "every batch reached the file when it was written"
    table = read_timeseries(path)  # repair on read: the stream, untouched
    assert is_partial(table)
    assert table.column("t_s").to_pylist() == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    assert {f.name: f.type for f in table.schema} == COLUMNS
    assert writer.stream_path.exists() and not path.exists()


def test_recovery_turns_the_stream_into_a_parquet_file_marked_partial(tmp_path):
    path = tmp_path / "timeseries.parquet"
    killed_writer(path, batches=2)
    assert recover_timeseries(path, row_group_rows=3)
    assert [p.name for p in tmp_path.iterdir()] == ["timeseries.parquet"]
    parquet = pq.ParquetFile(path)
    assert parquet.schema_arrow.metadata[b"partial"] == b"true"
    assert parquet.schema_arrow.metadata[b"schema_version"] == b"1"
    assert [parquet.metadata.row_group(i).num_rows for i in range(2)] == [3, 1]
    table = read_timeseries(path)
    assert is_partial(table) and table.num_rows == 4
    assert {f.name: f.type for f in table.schema} == COLUMNS
    assert not recover_timeseries(path)  # nothing left to recover


@pytest.mark.parametrize("into_last_batch", [1, 8, 100, -1])
def test_a_stream_cut_mid_batch_keeps_every_complete_batch(tmp_path, into_last_batch):
    path = tmp_path / "timeseries.parquet"
    writer, sizes = killed_writer(path, batches=3)
    cut = (sizes[2] if into_last_batch > 0 else sizes[3]) + into_last_batch
    with open(writer.stream_path, "r+b") as handle:
        handle.truncate(cut)
    assert read_timeseries(path).column("t_s").to_pylist() == [0.0, 0.0, 1.0, 1.0]
    assert recover_timeseries(path)
    assert read_timeseries(path).num_rows == 4


@pytest.mark.parametrize("size", [0, 7])
def test_a_stream_cut_inside_its_schema_recovers_as_an_empty_table(tmp_path, size):
    path = tmp_path / "timeseries.parquet"
    writer, _ = killed_writer(path, batches=1)
    with open(writer.stream_path, "r+b") as handle:
        handle.truncate(size)
    assert recover_timeseries(path)
    table = read_timeseries(path)
    assert table.num_rows == 0 and is_partial(table)
    assert {f.name: f.type for f in table.schema} == COLUMNS


def test_phase_markers_reach_the_stream_at_once_with_every_row_before_them(tmp_path):
    path = tmp_path / "timeseries.parquet"
    writer = TimeSeriesWriter(path, flush_interval_s=math.inf, clock=FakeClock())
    writer.add("warmup", [sample(1.0)])
    assert read_timeseries(path).num_rows == 0
    writer.mark_phase("measure", 2.0)
    rows = read_timeseries(path).to_pylist()
    assert [(r["phase"], r["gpu_index"]) for r in rows] == [("warmup", 0), ("measure", None)]
    writer.close()


def test_buffered_rows_reach_the_stream_once_the_flush_interval_passed(tmp_path):
    path = tmp_path / "timeseries.parquet"
    clock = FakeClock()
    writer = TimeSeriesWriter(path, flush_interval_s=1.0, clock=clock)
    writer.add("measure", [sample(0.0)])
    clock.advance(0.5)
    writer.add("measure", [sample(0.5)])
    assert read_timeseries(path).num_rows == 0
    clock.advance(0.5)
    writer.add("measure", [sample(1.0)])
    assert read_timeseries(path).column("t_s").to_pylist() == [0.0, 0.5, 1.0]
    writer.close()


def test_a_stream_left_beside_a_finished_file_is_removed_and_the_file_kept(tmp_path):
    path = tmp_path / "timeseries.parquet"
    writer = TimeSeriesWriter(path)
    writer.add("measure", [sample(1.0)])
    writer.close()
    finished = path.read_bytes()
    writer.stream_path.write_bytes(b"left over by a kill between the two steps of close")
    assert not recover_timeseries(path)
    assert path.read_bytes() == finished and not writer.stream_path.exists()
    assert not recover_timeseries(tmp_path / "absent" / "timeseries.parquet")


def test_a_stream_of_another_schema_version_is_recovered_as_it_is_and_refused_on_read(tmp_path):
    path = tmp_path / "timeseries.parquet"
    schema = pa.schema([pa.field("t_s", pa.float64())], metadata={"schema_version": "99"})
    with pa.OSFile(str(tmp_path / "timeseries.arrows.partial"), "wb") as sink:
        stream = pa.ipc.new_stream(sink, schema)
        stream.write_batch(pa.record_batch({"t_s": [1.0, 2.0]}, schema=schema))
    with pytest.raises(LlemError, match="'99'"):
        read_timeseries(path)
    assert recover_timeseries(path)
    recovered = pq.read_table(path)
    assert recovered.column("t_s").to_pylist() == [1.0, 2.0]
    assert recovered.schema.metadata[b"schema_version"] == b"99"
    with pytest.raises(LlemError, match="'99'"):
        read_timeseries(path)
