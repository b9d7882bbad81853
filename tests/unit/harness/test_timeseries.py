import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.energy.device import GpuSample, GpuSet
from harness.energy.sampler import PowerSampler
from harness.errors import LlemError
from harness.testing import FakeClock, FakeGpu
from harness.timeseries import TimeSeriesWriter, read_timeseries

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


def test_file_is_partial_until_closed_then_moved_into_place(tmp_path):
    path = tmp_path / "timeseries.parquet"
    writer = TimeSeriesWriter(path, row_group_rows=2)
    writer.add("measure", [sample(1.0), sample(1.0, 1)])
    assert writer.partial_path == tmp_path / "timeseries.parquet.partial"
    assert writer.partial_path.exists()
    assert not path.exists()
    writer.close()
    assert path.exists()
    assert not writer.partial_path.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["timeseries.parquet"]


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
