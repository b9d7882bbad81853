"""A run's timeseries.parquet read back for the report: phases, GPUs, downsampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.energy.device import GpuSample
from harness.timeseries import TimeSeriesWriter, stream_path_for
from orchestrator.report.power import downsample, read_trace


def _write(path: Path, phases: list[tuple[str, float]], gpus: int, tick_s: float = 0.1,
           close: bool = True) -> None:
    writer = TimeSeriesWriter(path, flush_interval_s=0.0)
    t_s = 500.0
    for phase, seconds in phases:
        writer.mark_phase(phase, t_s)
        for _ in range(round(seconds / tick_s)):
            writer.add(phase, [GpuSample(gpu_index=i, t_s=t_s, power_w=100.0 * (i + 1) + t_s,
                                         energy_counter_j=None, temperature_c=40.0 + i)
                               for i in range(gpus)])
            t_s += tick_s
    if close:
        writer.close()


def test_phases_span_from_one_marker_to_the_next_in_seconds_from_the_first(tmp_path):
    _write(tmp_path / "timeseries.parquet", [("baseline", 2.0), ("load", 3.0), ("measure", 5.0)],
           gpus=2)
    trace = read_trace(tmp_path)
    assert trace is not None and not trace.partial
    assert [(p.phase, round(p.start_s, 6)) for p in trace.phases] == [
        ("baseline", 0.0), ("load", 2.0), ("measure", 5.0)]
    assert trace.phases[-1].end_s == pytest.approx(9.9)  # the last sample
    assert [s.gpu_index for s in trace.power_w] == [0, 1]
    assert trace.samples == 200
    assert trace.power_w[1].values[0] == pytest.approx(700.0)  # 200 W + t_s 500
    assert trace.temperature_c[1].values == [41.0] * 100


def test_a_long_run_is_reduced_to_bucket_means_that_keep_the_average(tmp_path):
    _write(tmp_path / "timeseries.parquet", [("measure", 120.0)], gpus=1)
    trace = read_trace(tmp_path, max_points=400)
    assert trace is not None and trace.samples == 1200
    power = trace.power_w[0]
    assert len(power.t_s) == len(power.values) == 400
    assert np.mean(power.values) == pytest.approx(100.0 + 500.0 + 119.9 / 2)
    assert power.t_s == sorted(power.t_s)


def test_downsample_keeps_short_series_as_they_are():
    t_s, values = np.arange(5.0), np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert downsample(t_s, values, 10) == (t_s.tolist(), values.tolist())
    assert downsample(t_s, values, 2) == ([0.5, 3.0], [1.5, 4.0])  # samples 0-1, 2-4


def test_a_run_without_gpus_has_phases_and_no_power(tmp_path):
    _write(tmp_path / "timeseries.parquet", [("baseline", 1.0), ("measure", 1.0)], gpus=0)
    trace = read_trace(tmp_path)
    assert trace is not None
    assert [p.phase for p in trace.phases] == ["baseline", "measure"]
    assert trace.power_w == [] and trace.samples == 0


def test_a_killed_writer_gives_a_partial_trace_and_no_file_gives_none(tmp_path):
    assert read_trace(tmp_path) is None
    _write(tmp_path / "timeseries.parquet", [("measure", 1.0)], gpus=1, close=False)
    assert stream_path_for(tmp_path / "timeseries.parquet").exists()
    trace = read_trace(tmp_path)
    assert trace is not None and trace.partial and trace.samples == 10
