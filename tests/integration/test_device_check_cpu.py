"""`make device-check` in its CPU mode: every section's figure against the fakes' known truth.

The check script runs as `make device-check` runs it (its own process, PYTHONPATH at the
repository root), on FakeGpu traces whose counter moves every 100 ms and whose power is a 1 s
average refreshed every 50 ms, so the hardware check cannot rot between GPU runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_POWER_W = 300.0  # the constant power of the fakes behind harness runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("out")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    done = subprocess.run(
        [sys.executable, "tests/gpu/device_check.py", "--mode", "cpu", "--out", str(out),
         "--work", str(tmp_path_factory.mktemp("work"))],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((out / "device-check.json").read_text())
    data["_summary"] = (out / "summary.md").read_text()
    return data


def test_every_section_produced_its_figures(report):
    statuses = {name: section["status"] for name, section in report["sections"].items()}
    assert statuses == dict.fromkeys(
        ["machine", "identity", "idle_baseline", "counter_update_period", "model",
         "j_per_token_cycles", "phase_split", "nvml_vs_zeus"], "ok")
    assert all(section["elapsed_s"] >= 0 for section in report["sections"].values())
    assert report["mode"] == "cpu" and report["elapsed_s"] < 120
    assert "CPU mode" in report["_summary"] and "counter moves every" in report["_summary"]
    assert report["validation_doc"].startswith("docs/validation/fake-gpu-device-check-")


def test_update_periods_are_the_fakes(report):
    section = report["sections"]["counter_update_period"]
    truth = section["truth"]
    assert section["energy_counter"]["median_s"] == pytest.approx(truth["counter_period_s"],
                                                                  rel=0.05)
    assert section["power_reading"]["median_s"] == pytest.approx(truth["power_period_s"],
                                                                 rel=0.1)
    assert section["energy_counter"]["count"] >= 10
    # the held (1 s averaged) power readings integrate to the counter's energy
    assert abs(section["counter_vs_power"]["integral_vs_counter_pct"]) < 3


def test_idle_power_from_the_counter_is_the_traces_mean(report):
    section = report["sections"]["idle_baseline"]
    true_w = section["truth"]["mean_power_w"]
    # counter read at two of its updates: exact up to the polling interval
    assert section["counter_power_w"] == pytest.approx(true_w, rel=0.005)
    assert section["sampled_mean_power_w"] == pytest.approx(true_w, rel=0.05)
    assert section["samples"] >= 10


def test_identity_proof_binds_cuda_device_0_to_the_gpu_the_runner_gave(report):
    section = report["sections"]["identity"]
    assert section["cuda_visible_devices_before"] == "1"  # a runner restricted the run
    assert section["binding"]["cuda_index"] == 0 and section["binding"]["nvml_index"] == 1
    assert section["cuda_visible_devices_after"] == section["binding"]["uuid"]
    assert section["cuda_device_0_uuid"] == section["binding"]["uuid"]
    assert section["match"] is True and section["proof"]["method"] == "cuda_device_uuid"


def test_cycles_interleave_and_every_window_holds_the_true_energy(report):
    section = report["sections"]["j_per_token_cycles"]
    runs = section["runs"]
    assert [(r["config"], r["cycle"]) for r in runs] == [
        ("A", 1), ("B", 1), ("A", 2), ("B", 2), ("A", 3), ("B", 3)]
    for run in runs:
        assert run["energy_method"] == "nvml_counter"
        truth = run["truth"]
        assert truth["energy_j"] == pytest.approx(RUN_POWER_W * run["duration_s"])
        assert abs(run["energy_j"] - truth["energy_j"]) <= truth["counter_bound_j"]
        assert run["j_per_token"] == pytest.approx(run["energy_j"] / run["output_tokens"])
    for label in ("A", "B"):
        spread = section["per_config"][label]["j_per_token"]
        mine = [r["j_per_token"] for r in runs if r["config"] == label]
        assert spread["n"] == 3 and spread["mean"] == pytest.approx(sum(mine) / 3)


def test_phase_split_reports_the_choice_and_why_window_edges_cannot_work(report):
    section = report["sections"]["phase_split"]
    auto = section["auto"]
    assert auto["phase_split_method"] == "prefill_pass"
    assert 0 < auto["shortest_phase_s"] < section["min_phase_s"]
    assert auto["prefill"]["energy_j"] + auto["decode"]["energy_j"] == pytest.approx(
        auto["energy_j"])
    assert section["forced"]["prefill_pass"] == {"same_as_auto": True}
    assert section["forced"]["window_edges"]["run"] is False
    assert "refuses window_edges" in section["forced"]["window_edges"]["reason"]


def test_nvml_and_zeus_read_the_same_counter(report):
    section = report["sections"]["nvml_vs_zeus"]
    zeus_run = section["zeus_run"]
    assert zeus_run["energy_method"] == "zeus_counter"
    assert abs(zeus_run["energy_j"] - zeus_run["truth"]["energy_j"]) <= (
        zeus_run["truth"]["counter_bound_j"])
    window = section["shared_window"]
    bound_j = RUN_POWER_W * 0.1  # each source's delta is within one counter update
    assert abs(window["nvml_j"] - window["truth"]["energy_j"]) <= bound_j
    assert abs(window["zeus_j"] - window["truth"]["energy_j"]) <= bound_j
    assert section["nvml_runs_a"]["n"] == 3
