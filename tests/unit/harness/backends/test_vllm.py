"""The vLLM backend against a fake vLLM (tests/fakes/vllm) that mirrors the API llem calls.

The fake is checked against vLLM's documented signatures (tests/fakes/vllm_documented.py) and,
where vLLM is installed, the calls the backend makes are checked against the real library.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness.backends.base import GenerationOutput, Request
from harness.backends.vllm import VllmBackend
from harness.backends.vllm.engine import (
    CPU_ENVIRONMENT,
    ENVIRONMENT,
    config_view,
    planned_environment,
    prepare_environment,
)
from harness.datasets import build_requests
from harness.energy import GpuSet
from harness.errors import BackendError, PreflightError
from harness.protocol import ExperimentRun
from harness.schema.config import ExperimentConfig
from harness.schema.result import ExperimentResult
from harness.schema.run_spec import RunSpec
from harness.testing import FakeGpu, edge_tolerance_j

FAKES = Path(__file__).resolve().parents[3] / "fakes"
POWER_W = 150.0
EOS_ID = 1  # the tiny model's
N, INPUT_LEN, OUTPUT_LEN, MAX_NUM_SEQS = 6, 8, 7, 4


def test_importing_the_backend_imports_neither_vllm_nor_torch() -> None:
    code = (
        "import sys\n"
        "from harness.backends import backend_class\n"
        "backend_class('vllm')\n"
        "heavy = sorted(m for m in ('vllm', 'torch', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr


# -- fixtures -------------------------------------------------------------------------------


def forget_vllm() -> None:
    for name in [name for name in sys.modules if name == "vllm" or name.startswith("vllm.")]:
        del sys.modules[name]


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM's variables start unset and are restored afterwards, whatever the backend sets."""
    for name in ENVIRONMENT:
        monkeypatch.setenv(name, "placeholder")  # remembers the original state ...
        monkeypatch.delenv(name)  # ... and starts the test without the variable


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch, clean_environment: None) -> Iterator[ModuleType]:
    """``import vllm`` finds the fake; its record of calls starts empty."""
    forget_vllm()
    monkeypatch.syspath_prepend(str(FAKES))
    yield importlib.import_module("vllm")
    forget_vllm()


def recorded(target: str) -> list[Any]:
    calls: list[Any] = importlib.import_module("vllm._fake").calls(target)
    return calls


def make_config(model_dir: Path, **overrides: Any) -> ExperimentConfig:
    values: dict[str, Any] = {
        "model": str(model_dir),
        "backend": "vllm",
        "precision": "fp16",
        "n": N,
        "input_len": INPUT_LEN,
        "output_len": OUTPUT_LEN,
        "vllm": {"max_num_seqs": MAX_NUM_SEQS},
    }
    values.update(overrides)
    return ExperimentConfig(**values)


def loaded(config: ExperimentConfig) -> VllmBackend:
    backend = VllmBackend(config, "cuda:0")
    backend.load()
    return backend


def run_all(backend: VllmBackend) -> GenerationOutput:
    return backend.generate(build_requests(backend.config, backend))


def fake_gpus() -> GpuSet:
    gpus = [FakeGpu([(0.0, POWER_W), (1e6, POWER_W)], index=i,
                    temperature_c=[(0.0, 40.0), (1e6, 40.0)]) for i in range(2)]
    return GpuSet(gpus, driver_version="999.1", cuda_version="12.9")


def execute(model_dir: Path, run_dir: Path, **overrides: Any) -> ExperimentResult:
    config = make_config(
        model_dir, warmup={"n_warmup": 1, "min_seconds": 0}, baseline={"duration_s": 0.2},
        energy={"sample_interval_ms": 20, "prefill_pass_min_s": 0.2}, **overrides,
    )
    spec = RunSpec(run_id="vllm-run", config=config)
    return ExperimentRun(spec, run_dir, gpus=fake_gpus(), device="cuda:0").execute()


# -- through the harness --------------------------------------------------------------------


def test_a_run_measures_the_fixed_work_and_records_what_the_engine_resolved(
    fake_vllm: ModuleType, tiny_model_dir: Path, tmp_path: Path
) -> None:
    result = execute(tiny_model_dir, tmp_path / "run")

    assert ExperimentResult.model_validate_json((tmp_path / "run" / "result.json").read_text())
    assert result.throughput.requests == N
    assert result.throughput.output_tokens == N * OUTPUT_LEN
    assert result.throughput.input_tokens == N * INPUT_LEN
    duration = result.throughput.duration_s
    # Two GPUs on the machine, tensor_parallel_size 1: only the engine's GPU is measured.
    assert result.energy.energy_j == pytest.approx(POWER_W * duration,
                                                   abs=edge_tolerance_j(POWER_W))
    assert [b.uuid for b in result.environment.gpu_bindings] == ["GPU-fake-0"]
    identity = result.environment.gpu_identity
    assert identity is not None and identity.method == "nvml_processes_or_memory"
    assert result.energy.energy_per_output_token_j == pytest.approx(
        result.energy.energy_j / (N * OUTPUT_LEN))
    # Without streaming there are no first-token times: no TTFT, no ITL; the phase split
    # comes from the measured prefill pass.
    # LLM.generate returns every request at once: no per-request end, so no e2e (not the
    # window's length repeated n times)
    assert result.latency.e2e is None and result.latency.ttft is None
    assert result.energy.phase_split_method == "prefill_pass"
    assert result.memory is None
    assert result.environment.backend_versions["vllm"] == "0.10.2+fake"


def test_a_run_records_the_engine_arguments_and_resolved_settings(
    fake_vllm: ModuleType, tiny_model_dir: Path, tmp_path: Path
) -> None:
    result = execute(tiny_model_dir, tmp_path / "run")
    params = result.effective_parameters
    model_dir = str(tiny_model_dir.resolve())

    expected_kwargs = {"model": model_dir, "tokenizer": model_dir, "revision": None,
                       "dtype": "float16", "seed": 42, "disable_log_stats": True,
                       "max_num_seqs": MAX_NUM_SEQS, "enable_prefix_caching": False}
    assert params["engine_kwargs"] == expected_kwargs
    [construction] = recorded("LLM")
    assert construction.kwargs == expected_kwargs
    assert params["engine"] == "LLM" and params["batching"] == "continuous"
    assert params["max_num_seqs"] == MAX_NUM_SEQS  # from the config
    assert params["block_size"] == 16  # vLLM's defaults, resolved by the engine
    assert params["max_num_batched_tokens"] == 8192
    assert params["enable_prefix_caching"] is False  # llem's default for measurement
    assert params["kv_cache_dtype"] == "auto"
    assert params["dtype"] == "float16" and params["max_model_len"] == 4096
    assert params["num_gpu_blocks"] > 0
    assert params["environment"]["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"
    assert params["settings_source"].startswith("resolved")


def test_warmup_is_one_engine_wave_and_the_engine_is_shut_down(
    fake_vllm: ModuleType, tiny_model_dir: Path, tmp_path: Path
) -> None:
    execute(tiny_model_dir, tmp_path / "run")

    calls = recorded("LLM.generate")
    sizes = [len(call.args[0]) for call in calls]
    assert sizes[:2] == [MAX_NUM_SEQS, N]  # warmup, then the window
    # then the prefill pass: the window's prompts, one token each, repeated
    assert set(sizes[2:]) == {N}
    assert all(params.max_tokens == 1 for call in calls[2:] for params in
               ([call.args[1]] if not isinstance(call.args[1], list) else call.args[1]))
    assert all(call.kwargs == {"use_tqdm": False} for call in calls)
    assert len(recorded("engine_core.shutdown")) == 1
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").open()]
    progress = [event for event in events if event["event"] == "progress"]
    assert [(event["done"], event["total"]) for event in progress] == [(N, N)]


def test_streaming_gives_ttft_itl_and_a_measured_phase_split(
    fake_vllm: ModuleType, tiny_model_dir: Path, tmp_path: Path
) -> None:
    result = execute(tiny_model_dir, tmp_path / "run", latency={"streaming": True})

    latency = result.latency
    assert latency.ttft is not None and latency.ttft.count == N
    # ITL is per streamed chunk: the first carries one token, later ones two (merged steps)
    chunks_after_first = -(-(OUTPUT_LEN - 1) // 2)
    assert latency.itl is not None and latency.itl.count == N * chunks_after_first
    assert latency.itl.p50_s > 0  # not the zero gaps of tokens inside one chunk
    assert latency.tpot is not None and latency.tpot.count == N
    assert latency.reference_point == "submission"
    assert latency.e2e is not None and latency.ttft.p50_s <= latency.e2e.p50_s
    energy = result.energy
    # continuous batching interleaves the phases: only the measured prefill pass splits them
    assert energy.phase_split_method == "prefill_pass"
    assert energy.prefill is not None and energy.decode is not None
    assert energy.energy_j is not None
    split_j = energy.prefill.energy_j + energy.decode.energy_j
    assert split_j == pytest.approx(energy.energy_j)
    assert result.throughput.output_tokens == N * OUTPUT_LEN
    assert result.effective_parameters["engine"] == "AsyncLLMEngine"
    assert len(recorded("AsyncLLMEngine.from_engine_args")) == 1
    assert energy.prefill_pass is not None
    assert len(recorded("AsyncLLMEngine.generate")) == MAX_NUM_SEQS + N * (
        1 + energy.prefill_pass.repeats)  # warmup, window, prefill pass
    assert len(recorded("AsyncLLMEngine.shutdown")) == 1


def test_the_fake_engine_reads_cuda_visible_devices_as_vllm_does(
    fake_vllm: ModuleType, tiny_model_dir: Path, monkeypatch: Any
) -> None:
    # vLLM maps each CUDA_VISIBLE_DEVICES entry to NVML with int() and fails at start-up on a
    # UUID (vllm-project/vllm#13815, #20939, #41848); the harness hands it integer indices.
    FakeGpu([(0.0, 100.0)], index=0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-fake-0")
    with pytest.raises(BackendError, match="invalid literal for int"):
        loaded(make_config(tiny_model_dir))
    assert VllmBackend.cuda_visible_form == "index"


def test_tensor_parallel_runs_measure_exactly_the_engines_gpus(
    fake_vllm: ModuleType, tiny_model_dir: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-fake-3,GPU-fake-1,GPU-fake-0")
    powers_w = [100.0, 200.0, 300.0, 400.0]
    machine = GpuSet([FakeGpu([(0.0, p)], index=i, temperature_c=[(0.0, 40.0)])
                      for i, p in enumerate(powers_w)])
    config = make_config(tiny_model_dir, warmup={"n_warmup": 1, "min_seconds": 0},
                         baseline={"enabled": False}, energy={"sample_interval_ms": 20},
                         vllm={"max_num_seqs": MAX_NUM_SEQS, "tensor_parallel_size": 2})
    result = ExperimentRun(RunSpec(run_id="tp2", config=config), tmp_path / "run",
                           gpus=machine, device="cuda:0").execute()
    # the engine's two workers sit on the first two visible GPUs: NVML 3 and 1
    duration = result.throughput.duration_s
    assert result.energy.energy_j == pytest.approx((400.0 + 200.0) * duration,
                                                   abs=edge_tolerance_j(400.0 + 200.0))
    assert [(b.cuda_index, b.nvml_index) for b in result.environment.gpu_bindings] == [
        (0, 3), (1, 1)]
    identity = result.environment.gpu_identity
    assert identity is not None and len(identity.evidence) == 2
    assert all("new compute process" in line for line in identity.evidence)


def test_preflight_failures_stop_the_run_before_anything_loads(
    fake_vllm: ModuleType, tiny_model_dir: Path, tmp_path: Path
) -> None:
    spec = RunSpec(run_id="r", config=make_config(tiny_model_dir, vllm={"tensor_parallel_size": 4}))

    with pytest.raises(PreflightError, match="computes on 4 GPU.s. but the run may use 2"):
        ExperimentRun(spec, tmp_path / "run", gpus=fake_gpus(), device="cuda:0").execute()
    assert recorded("LLM") == []


# -- generation -----------------------------------------------------------------------------


def test_the_fake_model_would_stop_at_eos_without_ignore_eos(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    llm = fake_vllm.LLM(str(tiny_model_dir))
    [output] = llm.generate([{"prompt_token_ids": [5, 6, 7]}],
                            fake_vllm.SamplingParams(max_tokens=12))

    assert output.outputs[0].token_ids[-1] == EOS_ID
    assert len(output.outputs[0].token_ids) == 5


@pytest.mark.parametrize("streaming", [False, True])
def test_every_request_generates_exactly_output_len_tokens_through_eos(
    fake_vllm: ModuleType, tiny_model_dir: Path, streaming: bool
) -> None:
    backend = loaded(make_config(tiny_model_dir, output_len=12, latency={"streaming": streaming}))
    output = run_all(backend)

    assert [item.output_tokens for item in output.outputs] == [12] * N
    assert all(item.output_ids is not None and len(item.output_ids) == 12
               for item in output.outputs)
    # The model did emit EOS in every request; it neither ended nor was masked.
    assert all(item.output_ids is not None and EOS_ID in item.output_ids
               for item in output.outputs)
    backend.unload()


def test_outputs_follow_the_prompt_order(fake_vllm: ModuleType, tiny_model_dir: Path) -> None:
    backend = loaded(make_config(tiny_model_dir))
    requests = build_requests(backend.config, backend)
    output = backend.generate(requests)

    assert [item.request_id for item in output.outputs] == [r.request_id for r in requests]
    assert [item.input_tokens for item in output.outputs] == [INPUT_LEN] * N


def test_greedy_sampling_parameters(fake_vllm: ModuleType, tiny_model_dir: Path) -> None:
    run_all(loaded(make_config(tiny_model_dir)))

    [params] = recorded("SamplingParams")
    assert params.kwargs == {"n": 1, "max_tokens": OUTPUT_LEN, "min_tokens": OUTPUT_LEN,
                             "ignore_eos": True, "detokenize": False, "temperature": 0.0}


def test_sampling_defaults_are_vllms_and_top_k_zero_means_off(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    decoder = {"mode": "sampling", "temperature": 0.7, "top_k": 0}
    backend = loaded(make_config(tiny_model_dir, decoder=decoder))
    run_all(backend)

    [params] = recorded("SamplingParams")
    assert params.kwargs["temperature"] == 0.7
    assert params.kwargs["top_p"] == 1.0
    assert params.kwargs["top_k"] == -1  # vLLM 0.10 rejects 0
    assert backend.effective_parameters()["top_k"] == -1


def test_differing_lengths_get_one_sampling_params_per_request(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    backend = loaded(make_config(tiny_model_dir))
    output = backend.generate([Request(0, [5, 6, 7], 3), Request(1, [8, 9], 5)])

    assert [item.output_tokens for item in output.outputs] == [3, 5]
    [call] = recorded("LLM.generate")
    assert isinstance(call.args[1], list) and len(call.args[1]) == 2


def test_a_short_output_is_an_error(fake_vllm: ModuleType, tiny_model_dir: Path) -> None:
    backend = loaded(make_config(tiny_model_dir))
    importlib.import_module("vllm._fake").Faults.drop_last_token = True

    with pytest.raises(BackendError, match=f"produced {OUTPUT_LEN - 1} tokens, expected exactly"):
        run_all(backend)


def test_a_vllm_error_while_generating_is_a_backend_error(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    backend = loaded(make_config(tiny_model_dir, input_len=16,
                                 passthrough_kwargs={"max_model_len": 16}))

    with pytest.raises(BackendError, match="vLLM generation failed: ValueError") as caught:
        run_all(backend)
    assert "max_model_len" in str(caught.value)


def test_streaming_stamps_every_token_and_ends_prefill_at_the_last_first_token(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    backend = loaded(make_config(tiny_model_dir, latency={"streaming": True}))
    output = run_all(backend)
    second = run_all(backend)  # same event loop: the engine is bound to it

    [mark] = output.phase_marks
    assert output.phases_separated is False
    assert mark.start_s <= mark.prefill_end_s <= mark.end_s
    assert mark.prefill_end_s == max(item.first_token_s or 0.0 for item in output.outputs)
    for item in output.outputs:
        times = item.token_times_s
        assert times is not None and len(times) == OUTPUT_LEN and times == sorted(times)
        assert item.start_s == mark.start_s
        assert item.first_token_s == times[0] and item.end_s == times[-1]
    # Outputs carrying several tokens give each of them the output's arrival time.
    assert any(len(set(item.token_times_s or [])) < OUTPUT_LEN for item in output.outputs)
    kinds = {call.kwargs["output_kind"].name for call in recorded("SamplingParams")}
    assert kinds == {"DELTA"}
    ids = [call.args[2] for call in recorded("AsyncLLMEngine.generate")]
    assert len(set(ids)) == 2 * N
    assert [item.output_ids for item in second.outputs] == [item.output_ids
                                                            for item in output.outputs]


def test_unload_shuts_the_engine_down(fake_vllm: ModuleType, tiny_model_dir: Path) -> None:
    backend = loaded(make_config(tiny_model_dir))
    backend.unload()

    assert len(recorded("engine_core.shutdown")) == 1
    with pytest.raises(BackendError, match="not loaded"):
        run_all(backend)


def test_warmup_requests_are_one_wave(fake_vllm: ModuleType, tiny_model_dir: Path) -> None:
    requests = [Request(i, [5], 2) for i in range(300)]
    configured = VllmBackend(make_config(tiny_model_dir), "cuda:0")
    resolved = loaded(make_config(tiny_model_dir, vllm=None))  # vLLM's default: 256

    assert len(configured.warmup_requests(requests)) == MAX_NUM_SEQS
    assert len(resolved.warmup_requests(requests)) == 256
    assert len(resolved.warmup_requests(requests[:6])) == 6


# -- configuration --------------------------------------------------------------------------


def test_an_unknown_passthrough_argument_names_the_key(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    backend = VllmBackend(
        make_config(tiny_model_dir, passthrough_kwargs={"not_an_engine_arg": 1}), "cuda:0")

    with pytest.raises(BackendError, match="not_an_engine_arg") as caught:
        backend.load()
    assert "TypeError" in str(caught.value) and "passthrough_kwargs" in str(caught.value)


def test_passthrough_arguments_reach_the_engine(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    backend = loaded(make_config(tiny_model_dir, passthrough_kwargs={"max_model_len": 512}))
    params = backend.effective_parameters()

    assert params["engine_kwargs"]["max_model_len"] == 512
    assert params["max_model_len"] == 512
    assert params["engine_passthrough_kwargs"] == {"max_model_len": 512}


def test_passthrough_may_not_override_what_the_config_sets(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    config = make_config(tiny_model_dir, passthrough_kwargs={"dtype": "float32", "block_size": 8})
    backend = VllmBackend(config, "cuda:0")

    [problem] = backend.preflight()
    assert "passthrough_kwargs block_size, dtype would override" in problem
    with pytest.raises(BackendError, match="block_size, dtype"):
        backend.load()


def test_before_load_the_requested_settings_are_reported(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    params = VllmBackend(make_config(tiny_model_dir), "cuda:0").effective_parameters()

    assert params["max_num_seqs"] == MAX_NUM_SEQS and params["block_size"] is None
    assert params["dtype"] == "float16"
    assert params["settings_source"].startswith("requested")
    assert params["engine_kwargs"]["model"] == str(tiny_model_dir.resolve())


def test_the_environment_is_set_before_vllm_and_user_values_win(
    fake_vllm: ModuleType, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "DEBUG")
    backend = loaded(make_config(tiny_model_dir))
    environment = backend.effective_parameters()["environment"]

    assert environment == {**ENVIRONMENT, "VLLM_LOGGING_LEVEL": "DEBUG"}
    assert all(os.environ[name] == value for name, value in environment.items())


# -- preflight ------------------------------------------------------------------------------


def test_preflight_reports_missing_vllm_and_a_foreign_device_together(
    tiny_model_dir: Path,
) -> None:
    forget_vllm()
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    problems = VllmBackend(make_config(tiny_model_dir), "mps").preflight()

    assert len(problems) == 2
    assert "needs vllm, which is not installed" in problems[0]
    assert "llem images build vllm" in problems[0]
    assert "vLLM runs on an NVIDIA GPU, or on cpu in its CPU build" in problems[1]


def test_missing_vllm_on_cpu_is_one_problem_not_two(tiny_model_dir: Path) -> None:
    forget_vllm()
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    problems = VllmBackend(make_config(tiny_model_dir), "cpu").preflight()

    assert len(problems) == 1 and "needs vllm, which is not installed" in problems[0]


@pytest.mark.parametrize(("cpu_build", "expected"), [
    (True, None),
    (False, "the installed vLLM is not its CPU build (vLLM's platform: CudaPlatform)"),
])
def test_on_cpu_vllms_platform_api_decides(
    fake_vllm: ModuleType, tiny_model_dir: Path, cpu_build: bool, expected: str | None,
) -> None:
    platforms = importlib.import_module("vllm.platforms")
    if cpu_build:
        platforms.use(platforms.CpuPlatform())
    config = make_config(tiny_model_dir, precision="fp32",
                         vllm={"cpu_kvcache_space_gib": 1, "cpu_omp_threads_bind": "0-1"})

    problems = VllmBackend(config, "cpu").preflight()
    assert problems == [] if expected is None else (len(problems) == 1 and expected in problems[0])


def test_cpu_settings_on_a_gpu_run_are_refused(fake_vllm: ModuleType, tiny_model_dir: Path) -> None:
    backend = VllmBackend(make_config(tiny_model_dir, vllm={"cpu_kvcache_space_gib": 2}),
                          "cuda:0")
    backend.gpu_info = [gpu.info() for gpu in fake_gpus()]

    problems = backend.preflight()
    assert len(problems) == 1
    assert "vllm.cpu_kvcache_space_gib apply to vLLM's CPU build only" in problems[0]


def test_cpu_settings_reach_vllm_as_its_environment_and_are_recorded(
    fake_vllm: ModuleType, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in CPU_ENVIRONMENT.values():
        monkeypatch.delenv(variable, raising=False)
    config = make_config(tiny_model_dir, vllm={"cpu_kvcache_space_gib": 3})

    assert planned_environment(config)["VLLM_CPU_KVCACHE_SPACE"] == "3"
    environment = prepare_environment(config)
    assert environment["VLLM_CPU_KVCACHE_SPACE"] == os.environ["VLLM_CPU_KVCACHE_SPACE"] == "3"
    assert "VLLM_CPU_OMP_THREADS_BIND" not in environment  # unset: vLLM's default


@pytest.mark.parametrize(
    ("device", "section", "expected"),
    [
        ("cuda:0", {}, None),
        ("cuda:1", {}, "cannot be pointed at cuda:1"),
        ("cuda:0", {"tensor_parallel_size": 2}, None),
        ("cuda:0", {"tensor_parallel_size": 3}, "tensor_parallel_size is 3, but the run has 2"),
    ],
)
def test_preflight_checks_the_device(
    fake_vllm: ModuleType, tiny_model_dir: Path, device: str, section: dict[str, Any],
    expected: str | None,
) -> None:
    backend = VllmBackend(make_config(tiny_model_dir, vllm=section), device)
    backend.gpu_info = [gpu.info() for gpu in fake_gpus()]

    problems = backend.preflight()
    assert problems == [] if expected is None else (len(problems) == 1 and expected in problems[0])


def test_preflight_reports_a_missing_model(fake_vllm: ModuleType, tmp_path: Path) -> None:
    problems = VllmBackend(make_config(tmp_path / "absent"), "cuda:0").preflight()

    assert len(problems) == 1 and "does not exist" in problems[0]


# -- reporting ------------------------------------------------------------------------------


def test_parameter_counts_come_from_the_checkpoint(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), local_files_only=True)
    total = sum(parameter.numel() for parameter in model.parameters())
    embeddings = (model.get_input_embeddings().weight.numel()
                  + model.get_output_embeddings().weight.numel())

    counts = VllmBackend(make_config(tiny_model_dir), "cuda:0").parameter_counts()
    assert counts == (total, total - embeddings)


def test_versions_and_vocabulary(fake_vllm: ModuleType, tiny_model_dir: Path) -> None:
    backend = loaded(make_config(tiny_model_dir))

    versions = backend.versions()
    assert versions["vllm"] == "0.10.2+fake" and versions["torch"] and versions["transformers"]
    ids = backend.vocab_ids()
    assert min(ids) == 3 and max(ids) == 511  # specials 0-2 excluded, below vocab_size 512
    assert backend.encode("energy") and all(0 <= token < 512 for token in backend.encode("watt"))


# -- cross-request prefix caching -----------------------------------------------------------

PROMPT_LEN, DISTINCT = 300, 40


def cycled_prompts(copies: int = 2, seed: int = 7) -> list[list[int]]:
    """40 distinct 300-token prompts repeated verbatim: a prompt set cycled the old way."""
    import random

    rng = random.Random(seed)
    distinct = [rng.choices(range(3, 512), k=PROMPT_LEN) for _ in range(DISTINCT)]
    return [list(prompt) for _ in range(copies) for prompt in distinct]


def cached_by_the_fake(llm: Any, vllm: ModuleType, prompts: list[list[int]]) -> list[int]:
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompts],
                           vllm.SamplingParams(max_tokens=2, ignore_eos=True))
    return [output.num_cached_tokens for output in outputs]


def test_the_fake_serves_repeated_full_blocks_from_its_prefix_cache_like_vllm(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    # The reported case (vLLM's CPU engine, caching on by default): 40 distinct 300-token
    # prompts cycled to 80 requests, 10,240 of 24,000 prompt tokens (43 %) from the prefix
    # cache, 256 per repeat. With 128-token blocks that is two whole blocks of every repeat:
    # a third would need all 300 tokens, and vLLM always recomputes the last prompt token.
    llm = fake_vllm.LLM(str(tiny_model_dir), block_size=128)
    cached = cached_by_the_fake(llm, fake_vllm, cycled_prompts())

    assert cached == [0] * DISTINCT + [256] * DISTINCT
    assert sum(cached) == 10_240 and round(100 * sum(cached) / (80 * PROMPT_LEN)) == 43


def test_the_fake_caches_only_whole_leading_blocks_and_never_the_last_token(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    llm = fake_vllm.LLM(str(tiny_model_dir))  # vLLM's default 16-token blocks
    shared = list(range(10, 50))  # 40 tokens: two full blocks and a partial one
    prompts = [shared + [60, 61], shared + [70, 71], list(range(100, 132)), list(range(100, 132)),
               [5, *shared[1:], 80]]

    # The second prompt shares 40 tokens with the first: 2 blocks. An exact 32-token repeat
    # gets 1 block (its second block ends at the last token). A changed first token breaks
    # the chain of every later block.
    assert cached_by_the_fake(llm, fake_vllm, prompts) == [0, 32, 0, 16, 0]
    # The cache outlives the call: a later call hits what an earlier one computed.
    assert cached_by_the_fake(llm, fake_vllm, [shared + [90]]) == [32]


def test_the_fake_caches_nothing_with_prefix_caching_off(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    llm = fake_vllm.LLM(str(tiny_model_dir), block_size=128, enable_prefix_caching=False)

    assert cached_by_the_fake(llm, fake_vllm, cycled_prompts()) == [0] * (2 * DISTINCT)


def test_every_streamed_output_carries_its_requests_cached_tokens(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    import asyncio

    args = fake_vllm.AsyncEngineArgs(model=str(tiny_model_dir))
    engine = fake_vllm.AsyncLLMEngine.from_engine_args(args)
    prompt = {"prompt_token_ids": list(range(10, 60))}
    params = fake_vllm.SamplingParams(max_tokens=6, ignore_eos=True,
                                      output_kind=fake_vllm.RequestOutputKind.DELTA)

    async def stream(request_id: str) -> list[Any]:
        return [output.num_cached_tokens
                async for output in engine.generate(prompt, params, request_id)]

    loop = asyncio.new_event_loop()
    first = loop.run_until_complete(stream("a"))
    second = loop.run_until_complete(stream("b"))
    loop.close()

    assert len(first) > 1 and set(first) == {0}
    assert len(second) > 1 and set(second) == {48}  # 3 of the 50 tokens' blocks


def test_llem_turns_prefix_caching_off_and_records_why(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    params = loaded(make_config(tiny_model_dir)).effective_parameters()

    assert params["engine_kwargs"]["enable_prefix_caching"] is False
    assert params["enable_prefix_caching"] is False  # resolved by the engine
    assert params["cross_request_cache"] == {
        "setting": "enable_prefix_caching", "enabled": False,
        "source": "llem default: off in measurement runs (vllm.enable_prefix_caching unset)"}


def test_a_study_may_turn_prefix_caching_on(fake_vllm: ModuleType, tiny_model_dir: Path) -> None:
    config = make_config(tiny_model_dir, vllm={"enable_prefix_caching": True})
    params = loaded(config).effective_parameters()

    assert params["engine_kwargs"]["enable_prefix_caching"] is True
    assert params["enable_prefix_caching"] is True
    assert params["cross_request_cache"]["enabled"] is True
    assert params["cross_request_cache"]["source"] == "study: vllm.enable_prefix_caching"
    before_load = VllmBackend(config, "cuda:0").effective_parameters()
    assert before_load["enable_prefix_caching"] is True


def exact_repeats() -> list[Request]:
    return [Request(i, ids, 2) for i, ids in enumerate(cycled_prompts())]


@pytest.mark.parametrize("streaming", [False, True])
def test_the_backend_reports_the_cached_tokens_the_engine_reports(
    fake_vllm: ModuleType, tiny_model_dir: Path, streaming: bool
) -> None:
    caching = loaded(make_config(tiny_model_dir, latency={"streaming": streaming}, vllm={
        "enable_prefix_caching": True, "block_size": 128}))
    default = loaded(make_config(tiny_model_dir, latency={"streaming": streaming},
                                 vllm={"block_size": 128}))

    with_cache = caching.generate(exact_repeats()).outputs
    without = default.generate(exact_repeats()).outputs

    assert [o.cached_input_tokens for o in with_cache] == [0] * DISTINCT + [256] * DISTINCT
    assert [o.cached_input_tokens for o in without] == [0] * (2 * DISTINCT)
    caching.unload()
    default.unload()


def shared_preamble_file(path: Path) -> Path:
    preamble = "You are a careful assistant. Answer in one short paragraph. " * 3
    questions = ["Why is the sky blue?", "How do heat pumps work?", "What is a joule?"]
    path.write_text("".join(json.dumps({"prompt": preamble + q}) + "\n" for q in questions))
    return path


def test_a_run_records_zero_cached_tokens_under_llems_default(
    fake_vllm: ModuleType, tiny_model_dir: Path, tmp_path: Path
) -> None:
    dataset = str(shared_preamble_file(tmp_path / "p.jsonl"))
    result = execute(tiny_model_dir, tmp_path / "run", dataset=dataset, input_len=64)

    assert result.throughput.cached_prompt_tokens == 0
    assert "cross_request_cache_hits" not in result.warning_codes()


def test_a_study_that_asks_for_prefix_caching_gets_its_hits_recorded_without_warning(
    fake_vllm: ModuleType, tiny_model_dir: Path, tmp_path: Path
) -> None:
    dataset = str(shared_preamble_file(tmp_path / "p.jsonl"))
    result = execute(tiny_model_dir, tmp_path / "run", dataset=dataset, input_len=64,
                     vllm={"enable_prefix_caching": True})

    # Six requests share the preamble's leading blocks; the first of them computes them.
    cached = result.throughput.cached_prompt_tokens
    assert cached is not None and cached > 0 and cached % 16 == 0
    assert "cross_request_cache_hits" not in result.warning_codes()


def test_cache_hits_the_study_did_not_ask_for_are_a_warning(
    fake_vllm: ModuleType, tiny_model_dir: Path, tmp_path: Path
) -> None:
    importlib.import_module("vllm._fake").Faults.prefix_caching_ignores_flag = True
    dataset = str(shared_preamble_file(tmp_path / "p.jsonl"))
    result = execute(tiny_model_dir, tmp_path / "run", dataset=dataset, input_len=64)

    cached = result.throughput.cached_prompt_tokens
    assert cached is not None and cached > 0
    [warning] = [w for w in result.warnings if w.code == "cross_request_cache_hits"]
    assert f"{cached} of {result.throughput.input_tokens} prompt tokens" in warning.message


# -- the fake against vLLM's documented signatures ------------------------------------------

SURFACE: dict[str, Callable[[Any], Any]] = {
    "LLM": lambda vllm: vllm.LLM.__init__,
    "LLM.generate": lambda vllm: vllm.LLM.generate,
    "SamplingParams": lambda vllm: vllm.SamplingParams,
    "AsyncLLMEngine.from_engine_args": lambda vllm: vllm.AsyncLLMEngine.from_engine_args,
    "AsyncLLMEngine.generate": lambda vllm: vllm.AsyncLLMEngine.generate,
    "AsyncLLMEngine.shutdown": lambda vllm: vllm.AsyncLLMEngine.shutdown,
}
"""Recorded call target -> where it lives in a ``vllm`` module (fake, documented or real)."""


@pytest.fixture
def documented(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("vllm_documented", FAKES / "vllm_documented.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "vllm_documented", module)
    spec.loader.exec_module(module)
    return module


def signature(target: Any) -> inspect.Signature:
    """The signature as a caller sees it (``self`` left out)."""
    found = inspect.signature(target)
    parameters = list(found.parameters.values())
    if parameters and parameters[0].name == "self":
        parameters = parameters[1:]
    return found.replace(parameters=parameters)


def shape(target: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in signature(target).parameters.values()]


def record_every_call(tiny_model_dir: Path) -> tuple[list[Any], set[str]]:
    """Drive the backend through every path (offline, streaming, mixed lengths, sampling)."""
    engine_kwargs: set[str] = set()
    for streaming in (False, True):
        config = make_config(tiny_model_dir, latency={"streaming": streaming},
                             decoder={"mode": "sampling", "temperature": 0.5, "top_p": 0.9})
        backend = loaded(config)
        run_all(backend)
        backend.generate([Request(0, [5, 6], 2), Request(1, [7], 3)])
        engine_kwargs |= set(backend.effective_parameters()["engine_kwargs"])
        backend.unload()
    return list(importlib.import_module("vllm._fake").CALLS), engine_kwargs


def test_the_fake_has_the_documented_signatures(
    fake_vllm: ModuleType, documented: ModuleType
) -> None:
    for target, locate in SURFACE.items():
        assert shape(locate(fake_vllm)) == shape(locate(documented)), target
    assert inspect.isasyncgenfunction(fake_vllm.AsyncLLMEngine.generate)
    assert inspect.isasyncgenfunction(documented.AsyncLLMEngine.generate)
    documented_fields = {field.name for field in dataclasses.fields(documented.EngineArgs)}
    assert documented_fields <= {field.name for field in dataclasses.fields(fake_vllm.EngineArgs)}
    assert issubclass(fake_vllm.AsyncEngineArgs, fake_vllm.EngineArgs)
    assert leading_output_parameters(fake_vllm) == leading_output_parameters(documented)


def leading_output_parameters(vllm: Any) -> list[tuple[str, Any, Any]]:
    """``RequestOutput.__init__`` up to ``num_cached_tokens`` (later ones vary by version)."""
    parameters = list(signature(vllm.RequestOutput.__init__).parameters.values())
    names = [p.name for p in parameters]
    assert "num_cached_tokens" in names
    return [(p.name, p.kind, p.default) for p in parameters[: names.index("num_cached_tokens") + 1]]


def test_every_call_the_backend_makes_binds_to_the_documented_signatures(
    fake_vllm: ModuleType, documented: ModuleType, tiny_model_dir: Path
) -> None:
    calls, engine_kwargs = record_every_call(tiny_model_dir)

    assert {call.target for call in calls} >= set(SURFACE)
    for call in calls:
        if call.target in SURFACE:
            signature(SURFACE[call.target](documented)).bind(*call.args, **call.kwargs)
    # LLM(**kwargs) hands what it does not name to EngineArgs; AsyncEngineArgs takes them all.
    documented_fields = {field.name for field in dataclasses.fields(documented.AsyncEngineArgs)}
    assert engine_kwargs <= documented_fields


def test_the_installed_vllm_accepts_the_same_calls(
    tiny_model_dir: Path, documented: ModuleType, monkeypatch: pytest.MonkeyPatch,
    clean_environment: None,
) -> None:
    forget_vllm()
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed here (it runs in the vllm image)")
    with monkeypatch.context() as patch:
        patch.syspath_prepend(str(FAKES))
        calls, engine_kwargs = record_every_call(tiny_model_dir)
    forget_vllm()
    real = pytest.importorskip("vllm")

    for call in calls:
        if call.target in SURFACE:
            expected = signature(SURFACE[call.target](documented)).bind(*call.args, **call.kwargs)
            found = signature(SURFACE[call.target](real)).bind(*call.args, **call.kwargs)
            assert dict(found.arguments) == dict(expected.arguments), call.target
    assert inspect.isasyncgenfunction(real.AsyncLLMEngine.generate)
    assert engine_kwargs <= {field.name for field in dataclasses.fields(real.AsyncEngineArgs)}
    assert leading_output_parameters(real) == leading_output_parameters(documented)


# -- LoRA ------------------------------------------------------------------------------------


def test_a_lora_adapter_is_refused_at_validation_with_the_way_out() -> None:
    # llem does not wire adapters to vLLM's LoRARequest: accepting lora: and measuring the base
    # model instead would be a wrong result, so the config is refused (docs/backends.md).
    with pytest.raises(ValueError, match=r"lora is not supported by vllm: merge the adapter"
                       r".*or measure the adapter with backend pytorch"):
        ExperimentConfig(model="org/model", backend="vllm", lora={"adapter": "org/adapter"})


def test_a_study_with_only_vllm_lora_is_bad_input(tiny_model_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from orchestrator.cli import main

    study = tmp_path / "lora.yaml"
    study.write_text(f"model: {tiny_model_dir}\nbackend: vllm\nn: 2\nlora:\n  adapter: a\n")
    done = CliRunner().invoke(main, ["run", str(study), "--dry-run"])
    assert done.exit_code == 2, done.output
    assert "lora is not supported by vllm" in done.output
    assert "merge_and_unload" in done.output


# -- serving mode ---------------------------------------------------------------------------


def serve(model_dir: Path, run_dir: Path, **load: Any) -> ExperimentResult:
    """A serving run of 24 requests at constant arrivals, against the fake's scheduler."""
    settings = {"mode": "serving", "arrival": "constant", **load}
    return execute(model_dir, run_dir, n=24, load=settings)


def test_a_serving_run_measures_the_steady_window_between_ramp_up_and_drain(
    fake_vllm: ModuleType, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # 100 req/s against an engine that serves MAX_NUM_SEQS requests every ~8 ms: unsaturated.
    result = serve(tiny_model_dir, tmp_path / "run", request_rate=100.0, ramp_up_s=0.04)

    serving = result.serving
    assert serving is not None
    assert serving.requests_total == 24 and serving.requests_failed == 0
    # Constant arrivals 10 ms apart; the window [0.04 s, 0.23 s) holds arrivals 4 to 22.
    assert serving.ramp_up_s == pytest.approx(0.04)
    assert serving.window_s == pytest.approx(0.19)
    assert serving.requests_in_window == 19
    assert serving.offered_rate_rps == pytest.approx(19 / 0.19)
    assert not serving.saturated, serving.saturation_reason
    assert serving.ttft is not None and serving.ttft.count == 19
    assert result.latency.reference_point == "arrival"
    # The window's energy is the measured GPU's constant power between the window's edges.
    energy = result.energy
    assert len(result.environment.gpus) == 1
    assert energy.energy_j == pytest.approx(POWER_W * result.throughput.duration_s, rel=0.05)
    assert result.throughput.duration_s == pytest.approx(serving.window_s, abs=0.02)
    assert result.throughput.output_tokens == serving.output_tokens_in_window > 0
    assert energy.energy_per_output_token_j == pytest.approx(
        energy.energy_j / result.throughput.output_tokens)
    assert energy.phase_split_null_reason is not None
    assert energy.phase_split_null_reason.startswith("serving")
    assert result.effective_parameters["engine"] == "AsyncLLMEngine"
    assert result.effective_parameters["timing"].startswith("serving")
    phases = [json.loads(line)["phase"] for line in
              (tmp_path / "run" / "events.jsonl").read_text().splitlines()
              if json.loads(line)["event"] == "phase"]
    assert phases[phases.index("ramp_up"):] == ["ramp_up", "measure", "drain", "write"]
    # every request of the run went to the engine under its own id
    keys = [call.args[2] for call in recorded("AsyncLLMEngine.generate")
            if call.args[2].startswith("llem-serve-")]
    assert len(keys) == len(set(keys)) == 24


def test_an_offered_load_above_the_engines_pace_queues_and_counts_as_saturated(
    fake_vllm: ModuleType, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # One sequence at a time (~8 ms each, ~125 req/s) against 1,000 req/s.
    result = execute(tiny_model_dir, tmp_path / "run", n=24, vllm={"max_num_seqs": 1},
                     load={"mode": "serving", "arrival": "constant", "request_rate": 1000.0})

    serving = result.serving
    assert serving is not None
    assert serving.saturated
    assert serving.achieved_rate_rps < 0.9 * serving.offered_rate_rps
    assert "serving_saturated" in result.warning_codes()
    # the engine's queue shows in the time to first token: later arrivals wait longest
    # (request i starts about i x 8 ms after it could: TTFT grows with the arrival's index)
    assert serving.ttft is not None and serving.ttft.p90_s > 1.5 * serving.ttft.p50_s
    assert serving.ttft.p90_s > 0.05
    # ... and in the queue time the engine reports (statistics are on in serving mode)
    assert serving.queueing_delay_method == "client_wait+engine_queue"
    assert serving.queueing_delay is not None and serving.queueing_delay.p90_s > 0.05
    assert result.effective_parameters["engine_kwargs"]["disable_log_stats"] is False


def test_each_path_runs_the_engine_defaults_of_the_way_it_stands_for(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    # vLLM resolves unset max_num_seqs and max_num_batched_tokens by the engine's entry point:
    # the LLM class, the OpenAI server, or (AsyncLLMEngine.from_engine_args' own default)
    # a generic context with smaller budgets. Streaming the offline workload must not change
    # the engine's batch budgets behind the study's back (a latency.streaming sweep would
    # compare two engines), and serving in process must run the engine the OpenAI server
    # runs (a load.client sweep would compare two engines, the server's unread).
    def budgets(**overrides: Any) -> tuple[Any, Any]:
        backend = loaded(make_config(tiny_model_dir, vllm=None, **overrides))
        try:
            found = backend.effective_parameters()
            return found["max_num_seqs"], found["max_num_batched_tokens"]
        finally:
            backend.unload()

    offline = budgets()
    streaming = budgets(latency={"streaming": True})
    serving = budgets(load={"mode": "serving", "request_rate": 1.0})

    assert streaming == offline == (256, 8192)
    assert serving == (256, 2048)  # vLLM's OpenAI server on this GPU


def test_the_servers_warmup_is_one_engine_wave_not_the_whole_workload(
    fake_vllm: ModuleType, tiny_model_dir: Path
) -> None:
    # A serving run of minutes builds thousands of requests; warmup is one engine wave: the
    # max_num_seqs the server resolved (read from its /server_info), and where that is not
    # known, at most the largest max_num_seqs vLLM picks by itself (1024), never all of them.
    requests = [Request(i, [5], 2) for i in range(5000)]
    config = make_config(tiny_model_dir, vllm=None,
                         load={"mode": "serving", "request_rate": 16.0,
                               "client": "openai_server"})
    backend = VllmBackend(config, "cuda:0")

    assert len(backend.warmup_requests(requests)) == 1024  # nothing known

    backend._server_config = config_view({"scheduler_config": {"max_num_seqs": 256},
                                          "model_config": {"dtype": "torch.bfloat16"}})
    assert len(backend.warmup_requests(requests)) == 256
    resolved = backend.effective_parameters()
    assert resolved["max_num_seqs"] == 256 and resolved["dtype"] == "bfloat16"
    assert resolved["settings_source"].startswith("resolved: read from the server's")
