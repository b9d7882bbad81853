"""The arithmetic and guards of `make device-check` (tests/gpu/device_check.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.testing import FakeGpu, FakePynvml

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "gpu"))  # a script folder, not a package
import device_check as check  # noqa: E402
from device_platforms import Durations  # noqa: E402


def test_held_readings_integrate_as_steps():
    # 100 W from 0 to 1 s, then 300 W until 3 s: 100 J + 600 J
    assert check.hold_integral_j([(0.0, 100.0), (1.0, 300.0)], 3.0) == pytest.approx(700.0)
    assert check.change_intervals([(0.0, 1.0), (0.1, 2.0), (0.3, 3.0)]) == pytest.approx(
        [0.1, 0.2])


def test_interval_distribution_and_spread():
    figures = check.distribution([0.1] * 8 + [0.09, 0.2])
    assert figures["median_s"] == pytest.approx(0.1) and figures["count"] == 10
    assert figures["p10_s"] == pytest.approx(0.099) and figures["p90_s"] == pytest.approx(0.11)
    assert check.distribution([])["median_s"] is None
    spread = check.spread([1.0, 2.0, 3.0])
    assert spread["mean"] == 2.0 and spread["std"] == 1.0 and spread["cv"] == 0.5
    assert check.spread([4.0])["cv"] is None


def test_counter_and_held_power_agree_on_a_steady_load():
    # counter moves every 0.1 s at 200 W; power is read as 200 W, changing value only in mW
    energy = [(0.1 * k, 20.0 * k) for k in range(1, 51)]
    power = [(0.05, 200.0), (1.0, 200.001), (3.0, 199.999)]
    figures = check.counter_vs_power(energy, power)
    assert figures["counter_power_w"] == pytest.approx(200.0)
    assert figures["integral_vs_counter_pct"] == pytest.approx(0.0, abs=1e-3)
    # power read 10 % high: the comparison says so
    high = check.counter_vs_power(energy, [(0.05, 220.0)])
    assert high["integral_vs_counter_pct"] == pytest.approx(10.0)


def test_counter_edge_reads_the_counter_as_it_moves():
    gpu = FakeGpu([(0.0, 100.0)], counter_update_period_s=0.1)
    nvml = FakePynvml([gpu])
    sensor = check.Sensor(nvml, nvml.nvmlDeviceGetHandleByIndex(0), fake=gpu)
    t_s, value_j = check.counter_edge(sensor)
    updates = value_j / (100.0 * 0.1)  # the counter holds 100 W x the last update instant
    assert updates == pytest.approx(round(updates)) and round(updates) >= 1
    seen_after_s = gpu.trace_time_s(t_s) - round(updates) * 0.1
    assert 0 <= seen_after_s < 0.01  # found within polling time of the update


def test_a_failing_or_skipped_section_is_recorded_and_the_check_goes_on():
    durations = Durations(idle_s=1, poll_s=1, settle_s=0, budget_s=60, first_run_guess_s=5)
    ctx = check.Context(platform=SimpleNamespace(durations=durations), work=Path("/nowhere"))

    def broken(_):
        raise ValueError("no such sensor")

    def skipped(_):
        raise check.Skipped("not enough time")

    failed = check.run_section(ctx, "idle_baseline", broken)
    assert failed["status"] == "error" and failed["error"] == "ValueError: no such sensor"
    assert "Traceback" in failed["traceback"]
    assert check.run_section(ctx, "model", skipped)["reason"] == "not enough time"
    ctx.started_s = time.perf_counter() - ctx.platform.durations.budget_s
    with pytest.raises(check.Skipped, match="budget"):
        ctx.require(1.0, "a run")


def test_validation_file_is_named_by_gpu_and_date():
    report = {"started_at": "2026-12-01T10:00:00+00:00",
              "sections": {"machine": {"status": "ok", "gpus": [{"name": "NVIDIA H200"}]}}}
    assert check.validation_name(report) == "nvidia-h200-2026-12-01.md"
    report["sections"]["machine"] = {"status": "error"}
    assert check.validation_name(report) == "unknown-gpu-2026-12-01.md"


def test_a_guarded_part_keeps_its_error_and_lets_the_section_go_on():
    def run(_):
        raise RuntimeError("CUDA out of memory")

    part = check.guarded(run, None)
    assert part["status"] == "error" and part["error"] == "RuntimeError: CUDA out of memory"
    assert check.guarded(lambda: {"energy_j": 1.0}) == {"energy_j": 1.0}
