"""The measurement protocol end to end, in-process, with the real tiny model on CPU and a
FakeGpu playing a known power trace, so every energy figure has an exact expected value."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from harness.energy import GpuSet, discover_gpus
from harness.errors import PreflightError
from harness.io import read_events, write_json
from harness.protocol import ExperimentRun
from harness.schema import ExperimentConfig
from harness.schema.events import DoneEvent, ErrorEvent, HeartbeatEvent, PhaseEvent, StartEvent
from harness.schema.result import CoolDownRecord, ErrorRecord, ExperimentResult
from harness.schema.run_spec import RunSpec
from harness.testing import (
    FakeGpu,
    FakePowercap,
    FakePynvml,
    edge_tolerance_j,
    fake_zeus_get_gpus,
)

POWER_W = 120.0


def spec(model_dir, **overrides):
    config = {
        "model": str(model_dir), "backend": "pytorch", "precision": "fp32", "n": 6,
        "input_len": 16, "output_len": 12, "warmup": {"n_warmup": 1, "min_seconds": 0},
        "baseline": {"duration_s": 0.5},
        "energy": {"sample_interval_ms": 20, "prefill_pass_min_s": 0.3},
        "pytorch": {"batch_size": 3}, **overrides,
    }
    return RunSpec(run_id="r1", config=ExperimentConfig(**config))


def fake_gpus(**gpu_options):
    gpus = [FakeGpu([(0.0, POWER_W), (1e6, POWER_W)], index=i,
                    temperature_c=[(0.0, 40.0), (1e6, 40.0)], **gpu_options) for i in range(2)]
    return GpuSet(gpus, driver_version="999.1", cuda_version="12.9")


COOL_DOWN = CoolDownRecord(outcome="cut_off", waited_s=600.0, margin_c=3.0, max_s=600.0,
                           gpu_indices=[0, 1], idle_c=[34.0, 35.0], temperature_c=[52.0, 41.0])


REPLAYED_OUTPUT_LEN = 48


@pytest.fixture(scope="module")
def replayed(tiny_model_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    # As the orchestrator writes it: experiment.json, read back, carries the cool-down.
    # 48 output tokens: decode dominates the window by far, so the prefill estimate (one pass
    # measured outside the window) stays below the window whatever the machine's load.
    write_json(run_dir / "experiment.json",
               spec(tiny_model_dir, output_len=REPLAYED_OUTPUT_LEN)
               .model_copy(update={"cool_down": COOL_DOWN}))
    read_back = RunSpec.model_validate_json((run_dir / "experiment.json").read_text())
    powercap = FakePowercap(tmp_path_factory.mktemp("powercap"))
    powercap.add_zone("intel-rapl:0", "package-0", 262_143_328_850, energy_uj=77_000_000)
    powercap.add_zone("intel-rapl:0:0", "dram", 65_712_999_613, energy_uj=5_000)
    result = ExperimentRun(read_back, run_dir, gpus=fake_gpus(), device="cpu",
                           powercap_root=powercap.root).execute()
    return result, run_dir


def test_energy_follows_the_trace(replayed):
    result, _ = replayed
    energy = result.energy
    duration = result.throughput.duration_s
    assert energy.energy_method == "nvml_counter"
    # The machine has two GPUs; the model computes on one, so only that one is measured.
    # the trace's true energy, to within the real clock's dating of the two window edges
    assert energy.energy_j == pytest.approx(POWER_W * duration, abs=edge_tolerance_j(POWER_W))
    assert energy.energy_per_gpu_j == pytest.approx([POWER_W * duration],
                                                    abs=edge_tolerance_j(POWER_W))
    assert energy.mean_power_w == pytest.approx(POWER_W, abs=edge_tolerance_j(POWER_W) / duration)
    assert energy.energy_integrated_j == pytest.approx(energy.energy_j, rel=0.02)
    tokens = 6 * REPLAYED_OUTPUT_LEN
    assert energy.energy_per_output_token_j == pytest.approx(energy.energy_j / tokens)
    assert energy.tokens_per_joule == pytest.approx(tokens / energy.energy_j)
    assert energy.uncertainty_pct == pytest.approx(100 * 5 / energy.mean_power_w)
    assert "no_energy_sensor" not in result.warning_codes()


def test_baseline_and_dynamic_energy(replayed):
    result, _ = replayed
    assert result.baseline is not None and result.baseline.provenance == "fresh"
    assert result.baseline.power_w == pytest.approx(
        [POWER_W], abs=edge_tolerance_j(POWER_W) / result.baseline.duration_s)
    assert result.baseline.temperature_c == [40.0]
    assert result.baseline.cool_down == COOL_DOWN
    # Constant power: everything is "idle", so dynamic energy is ~0 and the raw figure stays.
    assert result.energy.energy_dynamic_j == pytest.approx(0.0, abs=0.01 * result.energy.energy_j)
    assert result.energy.energy_j > 0


def test_cold_start_and_phase_split(replayed):
    result, _ = replayed
    energy = result.energy
    assert energy.cold_start_duration_s is not None and energy.cold_start_duration_s > 0
    expected_j = POWER_W * energy.cold_start_duration_s
    assert energy.cold_start_energy_j == pytest.approx(expected_j, abs=edge_tolerance_j(POWER_W))
    # tiny batches: no phase lasts 5 s, so the split comes from a measured prefill pass
    assert energy.phase_split_method == "prefill_pass"
    assert energy.prefill is not None and energy.decode is not None
    assert energy.prefill_pass is not None and energy.prefill_pass.duration_s >= 0.3
    pass_ = energy.prefill_pass
    assert energy.prefill.energy_j == pytest.approx(pass_.energy_j / pass_.repeats)
    assert pass_.energy_j == pytest.approx(POWER_W * pass_.duration_s,
                                           abs=edge_tolerance_j(POWER_W))
    assert energy.prefill.energy_j + energy.decode.energy_j == pytest.approx(energy.energy_j)


def test_shortest_phase_is_recorded_whatever_the_split_method(replayed, tiny_model_dir,
                                                              tmp_path):
    result, _ = replayed
    window_s = result.throughput.duration_s
    shortest_s = result.energy.shortest_phase_s
    # two static batches of 3: the shortest prefill or decode is a small part of the window
    assert shortest_s is not None and 0 < shortest_s < window_s / 2
    off = ExperimentRun(spec(tiny_model_dir, energy={"phase_split": "off"}), tmp_path / "off",
                        gpus=fake_gpus(), device="cpu").execute()
    assert off.energy.phase_split_method is None
    assert off.energy.shortest_phase_s is not None and off.energy.shortest_phase_s > 0


def test_result_sections_and_environment(replayed):
    result, run_dir = replayed
    again = ExperimentResult.model_validate_json((run_dir / "result.json").read_text())
    assert again == result
    assert result.thermal is not None and result.thermal.temperature_start_c == [40.0]
    assert [g.index for g in result.environment.gpus] == [0]
    assert result.environment.gpus_available == 2
    determinism = result.environment.determinism
    assert determinism["seed"] == 42
    assert set(determinism) >= {"cudnn_deterministic", "cudnn_benchmark",
                                "deterministic_algorithms", "cublas_workspace_config"}
    assert [b.uuid for b in result.environment.gpu_bindings] == ["GPU-fake-0"]
    # computed on the CPU while a GPU trace was replayed: said, not hidden
    assert result.environment.gpu_identity is not None
    assert result.environment.gpu_identity.method == "none"
    assert "gpu_identity_unproven" in result.warning_codes()
    assert result.environment.driver_version == "999.1"
    assert result.environment.backend_versions["torch"]
    assert result.flops_estimate is not None and result.flops_estimate.flops > 0
    assert result.effective_parameters["batch_size"] == 3
    assert result.warmup.batches == 1
    assert {"warmup_cut_short", "short_window"} <= set(result.warning_codes())


def test_timeseries_has_phases_and_gpu_rows(replayed):
    _, run_dir = replayed
    table = pq.read_table(run_dir / "timeseries.parquet").to_pylist()
    phases = {row["phase"] for row in table}
    assert {"preflight", "baseline", "load", "warmup", "measure", "write"} <= phases
    measured = [row for row in table if row["phase"] == "measure" and row["gpu_index"] is not None]
    assert {row["gpu_index"] for row in measured} == {0}
    assert all(row["power_w"] == pytest.approx(POWER_W) for row in measured)
    for gpu in (0,):
        times = [row["t_s"] for row in table if row["gpu_index"] == gpu]
        assert times == sorted(times)


def test_events_mark_every_phase(replayed):
    _, run_dir = replayed
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    phases = [e["phase"] for e in events if e["event"] == "phase"]
    assert phases == ["preflight", "baseline", "load", "warmup", "measure", "prefill_pass",
                      "write"]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["done"] == progress[-1]["total"] == 6
    assert events[-1]["event"] == "done"


def test_preflight_failure_writes_error_json_and_keeps_series(tiny_model_dir, tmp_path):
    bad = spec(tiny_model_dir, dataset=str(tmp_path / "absent.jsonl"))
    with pytest.raises(PreflightError, match="absent.jsonl"):
        ExperimentRun(bad, tmp_path / "run", gpus=fake_gpus(), device="cpu").execute()
    error = ErrorRecord.model_validate_json((tmp_path / "run" / "error.json").read_text())
    assert error.phase == "preflight" and error.type == "PreflightError"
    assert "absent.jsonl" in error.message and "Traceback" in error.traceback
    assert pq.read_table(tmp_path / "run" / "timeseries.parquet").num_rows >= 1
    assert not (tmp_path / "run" / "result.json").exists()


def test_nvml_is_shut_down_when_the_backend_preflight_raises(tiny_model_dir, tmp_path,
                                                             monkeypatch):
    from harness.backends.pytorch import PyTorchBackend

    nvml = FakePynvml([FakeGpu([(0.0, POWER_W), (1e6, POWER_W)])])
    machine = discover_gpus(nvml=nvml)
    assert (nvml.inits, nvml.shutdowns) == (1, 0)

    def preflight_that_raises(self):
        raise RuntimeError("the driver went away")

    monkeypatch.setattr(PyTorchBackend, "preflight", preflight_that_raises)
    with pytest.raises(RuntimeError, match="driver went away"):
        ExperimentRun(spec(tiny_model_dir), tmp_path / "run", gpus=machine, device="cpu").execute()
    assert nvml.shutdowns == 1
    error = ErrorRecord.model_validate_json((tmp_path / "run" / "error.json").read_text())
    assert error.phase == "preflight" and error.type == "RuntimeError"
    last = read_events(tmp_path / "run" / "events.jsonl")[-1]
    assert isinstance(last, ErrorEvent) and last.message == "the driver went away"


def test_heartbeats_cover_every_phase_and_reach_the_callback(tiny_model_dir, tmp_path):
    seen = []
    ExperimentRun(spec(tiny_model_dir, baseline={"enabled": False}), tmp_path / "run",
                  gpus=GpuSet([]), device="cpu", on_event=seen.append,
                  heartbeat_s=0.01).execute()
    events = read_events(tmp_path / "run" / "events.jsonl")
    assert sorted(seen, key=lambda e: e.t_s) == events  # threads may call back out of order
    assert isinstance(events[0], StartEvent) and isinstance(events[-1], DoneEvent)
    assert events[0].heartbeat_s == 0.01  # announced, so the host knows to expect beats
    beats = [e for e in events if isinstance(e, HeartbeatEvent)]
    assert beats, "no heartbeat in a whole run"
    phases = [e.phase for e in events if isinstance(e, PhaseEvent)]
    assert {beat.phase for beat in beats} <= set(phases)
    assert [e.t_s for e in events] == sorted(e.t_s for e in events)


def test_run_experiment_hands_typed_events_to_the_callback(tiny_model_dir, tmp_path):
    import harness

    seen = []
    config = spec(tiny_model_dir, baseline={"enabled": False}).config
    harness.run_experiment(config, tmp_path / "run", on_event=seen.append)
    assert isinstance(seen[0], StartEvent) and isinstance(seen[-1], DoneEvent)
    assert [e.phase for e in seen if isinstance(e, PhaseEvent)][:3] == [
        "preflight", "baseline", "load"]
    assert sorted(seen, key=lambda e: e.t_s) == read_events(tmp_path / "run" / "events.jsonl")


def test_host_energy_is_recorded_beside_gpu_energy(replayed):
    result, _ = replayed
    host = result.energy.host
    assert host is not None and host.method == "rapl_powercap"
    # the fake counters did not move: the host's energy is exactly 0, and the GPU figures
    # (asserted against the trace above) are untouched by it
    assert host.cpu_package_energy_j == 0.0 and host.dram_energy_j == 0.0
    assert [(z.zone, z.name) for z in host.zones] == [("intel-rapl:0", "package-0"),
                                                       ("intel-rapl:0:0", "dram")]
    assert host.duration_s == pytest.approx(result.throughput.duration_s, abs=0.01)
    assert not {"host_energy_unavailable", "host_energy_incomplete"} & set(
        result.warning_codes())


def test_machine_warnings_reach_the_result(tiny_model_dir, tmp_path):
    gpus = fake_gpus(info={"mig_enabled": True, "persistence_mode": False,
                           "power_limit_w": 300.0, "default_power_limit_w": 400.0},
                     processes=[999_999])
    result = ExperimentRun(spec(tiny_model_dir, baseline={"enabled": False}), tmp_path / "r",
                           gpus=gpus, device="cpu").execute()
    codes = set(result.warning_codes())
    assert {"mig_enabled", "persistence_off", "power_limit_below_default",
            "foreign_processes", "no_baseline"} <= codes
    assert result.energy.energy_dynamic_j is None and result.baseline is None


def test_no_sensor_gives_null_energy_with_warning(tiny_model_dir, tmp_path):
    result = ExperimentRun(spec(tiny_model_dir), tmp_path / "r", gpus=GpuSet(),
                           device="cpu", powercap_root=tmp_path / "no-powercap").execute()
    assert result.energy.energy_j is None and result.energy.energy_per_output_token_j is None
    host = result.energy.host
    assert host is not None and host.cpu_package_energy_j is None and host.method is None
    assert host.null_reason == f"{tmp_path / 'no-powercap'}: missing (no powercap interface " \
        "on this machine or in this container)"
    assert "host_energy_unavailable" in result.warning_codes()
    assert result.energy.prefill is None
    assert result.energy.phase_split_null_reason == "no energy sensor: energy is not measured"
    assert "no_energy_sensor" in result.warning_codes()
    assert result.throughput.output_tokens == 72


def test_second_run_of_a_study_reuses_the_cached_baseline(tiny_model_dir, tmp_path):
    cache_dir = tmp_path / "cache"
    first_spec = spec(tiny_model_dir).model_copy(update={"baseline_cache_dir": str(cache_dir)})
    first = ExperimentRun(first_spec, tmp_path / "a", gpus=fake_gpus(), device="cpu").execute()
    second = ExperimentRun(first_spec, tmp_path / "b", gpus=fake_gpus(), device="cpu").execute()
    assert first.baseline is not None and first.baseline.provenance == "fresh"
    assert second.baseline is not None and second.baseline.provenance == "cached"
    assert second.baseline.power_w == first.baseline.power_w
    assert second.baseline.age_s > 0


def test_streaming_latency_gives_ttft_and_itl(tiny_model_dir, tmp_path):
    streaming = spec(tiny_model_dir, latency={"streaming": True})
    result = ExperimentRun(streaming, tmp_path / "r", gpus=GpuSet(), device="cpu").execute()
    latency = result.latency
    assert latency.ttft is not None and latency.ttft.count == 6
    assert latency.itl is not None and latency.itl.count == 6 * (12 - 1)  # first token excluded
    assert latency.e2e is not None and latency.ttft.p50_s < latency.e2e.p50_s
    plain = ExperimentRun(spec(tiny_model_dir), tmp_path / "p", gpus=GpuSet(),
                          device="cpu").execute()
    assert plain.latency.ttft is None and plain.latency.itl is None
    assert plain.measurement_config_hash != result.measurement_config_hash


def test_a_node_of_eight_gpus_publishes_the_energy_of_the_one_the_model_uses(
        tiny_model_dir, tmp_path, monkeypatch):
    # Before: an unset execution.gpus summed every GPU of the host (450 W + 7 x 70 W).
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    machine = GpuSet([FakeGpu([(0.0, 450.0 if i == 0 else 70.0)], index=i,
                              temperature_c=[(0.0, 40.0)]) for i in range(8)])
    result = ExperimentRun(spec(tiny_model_dir, baseline={"enabled": False}), tmp_path / "r",
                           gpus=machine, device="cpu").execute()
    assert result.energy.energy_j == pytest.approx(450.0 * result.throughput.duration_s,
                                                   abs=edge_tolerance_j(450.0))
    assert result.environment.gpus_available == 8
    assert [gpu.uuid for gpu in result.environment.gpus] == ["GPU-fake-0"]
    assert "CUDA_VISIBLE_DEVICES" not in __import__("os").environ  # restored after the run


class FlakyGpu(FakeGpu):
    """A GPU whose sampler reads fail 49 times in 50 (its counter reads at marks work)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads = 0

    def sample(self, t_s):
        self.reads += 1
        if self.reads % 50:
            raise RuntimeError("NVML_ERROR_UNKNOWN")
        return super().sample(t_s)


def test_sampler_read_errors_are_counted_per_gpu_and_fail_sanity(tiny_model_dir, tmp_path,
                                                                   monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu = FlakyGpu([(0.0, POWER_W), (1e6, POWER_W)], temperature_c=[(0.0, 40.0)])
    result = ExperimentRun(spec(tiny_model_dir, baseline={"enabled": False},
                                energy={"sample_interval_ms": 20, "phase_split": "off"}),
                           tmp_path / "r", gpus=GpuSet([gpu]), device="cpu").execute()
    energy = result.energy
    # the counter, read at the window's edges, still gives the trace's true energy
    assert energy.energy_j == pytest.approx(POWER_W * result.throughput.duration_s,
                                            abs=edge_tolerance_j(POWER_W))
    reads, errors = energy.power_samples_per_gpu[0], energy.sampler_read_errors_per_gpu[0]
    assert errors > reads  # before: the tick count stood in for successful reads
    assert errors >= 1
    assert "sampler_read_errors" in result.warning_codes()
    assert result.sanity is not None and not result.sanity.passed
    assert any("GPU 0: only" in failure for failure in result.sanity.failed_checks)


def test_a_measured_gpu_that_stayed_idle_fails_sanity(tiny_model_dir, tmp_path, monkeypatch):
    # The GPU measured sat at its idle 70 W with no kernel the whole time: whatever ran, it
    # was not on this GPU. Before, the result passed every check.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    idle = FakeGpu([(0.0, 70.0)], temperature_c=[(0.0, 35.0)], gpu_util_pct=0.0)
    result = ExperimentRun(spec(tiny_model_dir, energy={"sample_interval_ms": 20,
                                                        "phase_split": "off"}),
                           tmp_path / "r", gpus=GpuSet([idle]), device="cpu").execute()
    assert result.energy.energy_j == pytest.approx(70.0 * result.throughput.duration_s,
                                                   abs=edge_tolerance_j(70.0))
    assert result.thermal is not None and result.thermal.gpu_util_pct_max == [0.0]
    assert result.sanity is not None
    assert any(failure.startswith("GPU 0 stayed idle") for failure in result.sanity.failed_checks)


def test_zeus_source_reads_the_measured_gpu_through_the_zeus_getter_given(
        tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    machine = fake_gpus()
    run = ExperimentRun(spec(tiny_model_dir, energy={"backend": "zeus"}), tmp_path / "zeus",
                        gpus=machine, device="cpu",
                        zeus_get_gpus=fake_zeus_get_gpus(list(machine)))
    result = run.execute()
    assert result.energy.energy_method == "zeus_counter"
    assert result.energy.mean_power_w == pytest.approx(
        POWER_W, abs=edge_tolerance_j(POWER_W) / result.throughput.duration_s)
