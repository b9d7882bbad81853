"""The tensorrt backend on each TensorRT-LLM release layout the fake models (1.0.0, 1.2.1, after
the engine runtime's removal), with either runtime (``tensorrt.runtime``).

The fake releases are tests/fakes/tensorrt_llm laid out by tests/fakes/tensorrt_llm_layouts.py;
the model is the real tiny checkpoint and its tokenizer.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from llem_testkit.gpu_runs import execute_on_fake_gpu

from harness.backends.base import Request
from harness.backends.tensorrt import TensorRtBackend
from harness.errors import BackendError
from harness.schema.config import ExperimentConfig
from harness.schema.result import ExperimentResult
from harness.schema.run_spec import RunSpec
from harness.testing import FakeGpu

POWER_W = 150.0
PYTORCH = {"runtime": "pytorch"}
AFTER_REMOVAL = "1.4.0rc1"
KNOBS = {**PYTORCH, "cuda_graph_batch_sizes": [4, 1, 2], "attention_backend": "FLASHINFER",
         "overlap_scheduler": False}


def run_spec(model_dir: Path, cache_dir: Path, **overrides: Any) -> RunSpec:
    config = {"model": str(model_dir), "backend": "tensorrt", "precision": "fp16", "n": 6,
              "input_len": 16, "output_len": 12, "warmup": {"n_warmup": 1, "min_seconds": 0},
              "baseline": {"enabled": False},
              "energy": {"sample_interval_ms": 20, "prefill_pass_min_s": 0.2},
              "tensorrt": {**PYTORCH, "max_batch_size": 4}, **overrides}
    return RunSpec(run_id="r1", config=ExperimentConfig(**config),
                   engine_cache_dir=str(cache_dir))


def execute(spec: RunSpec, run_dir: Path) -> ExperimentResult:
    return execute_on_fake_gpu(spec, run_dir, POWER_W)


def backend_of(model_dir: Path, cache: Path, **overrides: Any) -> TensorRtBackend:
    backend = TensorRtBackend(run_spec(model_dir, cache, **overrides).config, "cuda:0")
    backend.gpu_info = [FakeGpu([(0.0, POWER_W)], info={"compute_capability": "9.0"}).info()]
    backend.engine_cache_root = cache
    return backend


def fake_llm() -> ModuleType:
    return importlib.import_module("tensorrt_llm.llmapi.llm")


def engine_builds() -> int:
    module = fake_llm()
    return int(getattr(module, "BUILDS", 0))  # after the removal there is no builder at all


# -- the PyTorch runtime: whole runs ---------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0.0", "1.2.1", AFTER_REMOVAL])
def test_a_pytorch_runtime_run_loads_the_checkpoint_and_builds_nothing(
        trtllm_layout: Callable[[str], ModuleType], version: str, tiny_model_dir: Path,
        tmp_path: Path) -> None:
    trtllm_layout(version)
    result = execute(run_spec(tiny_model_dir, tmp_path / "engines"), tmp_path / "run")

    assert result.throughput.output_tokens == 6 * 12
    assert result.engine_cache is None  # no engine, no cache entry
    assert not (tmp_path / "engines").exists() or not any((tmp_path / "engines").iterdir())
    assert engine_builds() == 0 and fake_llm().TORCH_LOADS == 1
    params = result.effective_parameters
    assert params["runtime"] == "pytorch" and params["runtime_llm_class"] == "tensorrt_llm.LLM"
    assert params["engine_source"] is None and "build_config" not in params
    ran = params["pytorch_runtime"]
    assert params["pytorch_runtime_source"] == "llm.args after loading"
    # unset knobs are the library's defaults, read back, not llem's guesses
    assert ran["backend"] == "pytorch" and ran["attn_backend"] == "TRTLLM"
    assert ran["cuda_graphs"] is True and ran["cuda_graph_config"]["max_batch_size"] == 128
    # of the default list, the runtime captures only the sizes a step of 4 can form
    assert ran["cuda_graph_captured_batch_sizes"] == [1, 2, 3, 4]
    assert ran["disable_overlap_scheduler"] is False
    assert ran["max_batch_size"] == 4 and ran["max_num_tokens"] == 8192
    checkpoint = json.loads((tiny_model_dir / "config.json").read_text())
    assert ran["max_seq_len"] == checkpoint["max_position_embeddings"]  # resolved by the LLM
    # block reuse off for measurement, on both runtimes, whatever the release's default
    assert ran["kv_cache_config"]["enable_block_reuse"] is False
    assert params["cross_request_cache"]["enabled"] is False
    assert params["decoding_by_library"]["greedy"] is True
    assert all(llm.is_shut_down for llm in fake_llm().INSTANCES)


def test_the_pytorch_runtimes_knobs_reach_the_llm_and_are_read_back(
        trtllm_layout: Callable[[str], ModuleType], tiny_model_dir: Path,
        tmp_path: Path) -> None:
    trtllm_layout(AFTER_REMOVAL)
    settings = {**KNOBS, "max_num_tokens": 512, "max_seq_len": 64,
                "kv_cache_free_gpu_memory_fraction": 0.5}
    result = execute(run_spec(tiny_model_dir, tmp_path / "c", tensorrt=settings,
                              latency={"streaming": True}), tmp_path / "run")
    params = result.effective_parameters
    ran = params["pytorch_runtime"]

    assert ran["cuda_graph_config"]["batch_sizes"] == [1, 2, 4]
    assert ran["cuda_graph_config"]["max_batch_size"] == 4
    assert ran["attn_backend"] == "FLASHINFER" and ran["disable_overlap_scheduler"] is True
    assert (ran["max_num_tokens"], ran["max_seq_len"]) == (512, 64)
    assert ran["kv_cache_config"]["free_gpu_memory_fraction"] == 0.5
    assert params["pytorch_runtime_asked"]["cuda_graph_config"] == {"batch_sizes": [4, 1, 2]}
    assert result.latency.ttft is not None and result.latency.ttft.count == 6

    off = execute(run_spec(tiny_model_dir, tmp_path / "c",
                           tensorrt={**PYTORCH, "cuda_graphs": False}), tmp_path / "off")
    assert off.effective_parameters["pytorch_runtime"]["cuda_graphs"] is False
    assert off.effective_parameters["pytorch_runtime"]["cuda_graph_config"] is None


def test_a_pytorch_runtime_serving_run_through_trtllm_serve(
        trtllm_layout: Callable[[str], ModuleType], server_on_fake_gpus: None,
        tiny_model_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    trtllm_layout(AFTER_REMOVAL)
    load = {"mode": "serving", "arrival": "constant", "request_rate": 10.0, "ramp_up_s": 0.1,
            "client": "openai_server"}
    spec = run_spec(tiny_model_dir, tmp_path / "c", n=12, load=load,
                    tensorrt={**KNOBS, "max_batch_size": 4, "max_input_len": 32})
    result = execute(spec, tmp_path / "run")
    log = capfd.readouterr().err

    assert result.serving is not None and result.serving.requests_failed == 0
    assert result.engine_cache is None and engine_builds() == 0
    params = result.effective_parameters
    command = params["server_command"]
    assert command[command.index("serve") + 1] == str(tiny_model_dir)  # the checkpoint
    assert command[command.index("--backend") + 1] == "pytorch"
    assert params["engine_runner"] == "trtllm-serve (--backend pytorch)"
    assert params["pytorch_runtime"] is None
    asked = params["pytorch_runtime_asked"]
    assert asked["attn_backend"] == "FLASHINFER" and asked["max_input_len"] == 32
    # top_k 1 is argmax whatever the top_p the server fills in; whether the library calls it
    # greedy depends on its release (1.0's rule needs top_p unset or 0)
    assert params["decoding_by_library"]["argmax"] is True
    assert params["decoding_by_library"]["greedy"] is True  # the newer rule (after removal)
    assert params["pytorch_runtime_source"] == "asked of trtllm-serve; not read back"
    options = params["server_llm_api_options"]
    assert options["cuda_graph_config"] == {"batch_sizes": [4, 1, 2]}  # as the study wrote
    assert options["attn_backend"] == "FLASHINFER" and options["max_input_len"] == 32
    # what the server's LLM ran with: llem's knobs, its scheduler, no block reuse
    line = next(line for line in log.splitlines() if "engine loaded:" in line)
    ran = json.loads(line.split("engine loaded:", 1)[1])
    assert ran["backend"] == "pytorch" and ran["attn_backend"] == "FLASHINFER"
    assert ran["disable_overlap_scheduler"] is True and ran["max_batch_size"] == 4
    assert ran["kv_cache_config"]["enable_block_reuse"] is False
    assert ran["scheduler_config"]["dynamic_batch_config"] is None


# -- the engine runtime on the releases that still have it -----------------------------------


@pytest.mark.parametrize("version", ["1.0.0", "1.2.1"])
def test_an_engine_is_built_once_then_hit_on_each_release_with_the_engine_runtime(
        trtllm_layout: Callable[[str], ModuleType], version: str, tiny_model_dir: Path,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    trtllm_layout(version)
    spec = run_spec(tiny_model_dir, tmp_path / "engines", tensorrt={"max_batch_size": 4})
    with caplog.at_level(logging.WARNING, logger="tensorrt_llm"):
        first = execute(spec, tmp_path / "a")
        second = execute(spec, tmp_path / "b")

    assert first.engine_cache is not None and first.engine_cache.hit is False
    assert second.engine_cache is not None and second.engine_cache.hit is True
    assert engine_builds() == 1 and fake_llm().TORCH_LOADS == 0
    assert first.engine_cache.description is not None
    assert first.engine_cache.description["tensorrt_llm_version"] == version
    assert first.engine_cache.description["runtime"] == "engine"
    assert second.effective_parameters["runtime"] == "engine"
    assert second.effective_parameters["runtime_llm_class"] == "tensorrt_llm._tensorrt_engine.LLM"
    legacy = [r for r in caplog.records if "legacy" in r.getMessage().lower()]
    # 1.2's engine path warns that it is legacy: the run still measures, the warning is logged
    assert bool(legacy) is (version == "1.2.1")


@pytest.mark.parametrize("version", ["1.0.0", "1.2.1"])
def test_limits_above_a_prebuilt_engines_are_refused_before_loading_on_either_release(
        trtllm_layout: Callable[[str], ModuleType], version: str, tiny_model_dir: Path,
        tmp_path: Path) -> None:
    # 1.0 raises at load; 1.2 clamps with a warning and would run a smaller batch than the
    # study says: either way preflight refuses, and nothing is loaded.
    trtllm = trtllm_layout(version)
    builder = importlib.import_module("tensorrt_llm._tensorrt_engine").LLM(
        model=str(tiny_model_dir), tokenizer=str(tiny_model_dir), max_batch_size=2)
    builder.save(str(tmp_path / "engine"))
    builder.shutdown()
    backend = backend_of(tiny_model_dir, tmp_path / "c",
                         tensorrt={"engine_dir": str(tmp_path / "engine"), "max_batch_size": 4})

    (problem,) = backend.preflight()
    assert "built with max_batch_size 2" in problem and "needs 4" in problem
    assert trtllm.__version__ == version


# -- refusals: a runtime the release lacks, limits, passthrough ------------------------------


def test_runtime_engine_after_the_removal_is_refused_with_both_fixes(
        trtllm_layout: Callable[[str], ModuleType], tiny_model_dir: Path,
        tmp_path: Path) -> None:
    trtllm_layout(AFTER_REMOVAL)
    backend = backend_of(tiny_model_dir, tmp_path / "c", tensorrt={"max_batch_size": 4})

    (problem,) = backend.preflight()
    assert f"tensorrt_llm {AFTER_REMOVAL}" in problem and "no TensorRT-engine runtime" in problem
    assert "1.2.1" in problem and "tensorrt.runtime: pytorch" in problem
    with pytest.raises(BackendError, match="no TensorRT-engine runtime"):
        backend.load()
    assert fake_llm().INSTANCES == []  # never switched to the PyTorch runtime
    assert backend_of(tiny_model_dir, tmp_path / "c").preflight() == []  # runtime: pytorch


def test_runtime_pytorch_on_a_0x_release_is_refused(
        trtllm_layout: Callable[[str], ModuleType], tiny_model_dir: Path,
        tmp_path: Path) -> None:
    trtllm_layout("0.21.0")
    backend = backend_of(tiny_model_dir, tmp_path / "c")

    (problem,) = backend.preflight()
    assert "tensorrt_llm 0.21.0 has no PyTorch runtime" in problem
    assert "tensorrt.runtime: engine" in problem
    with pytest.raises(BackendError, match="no PyTorch runtime"):
        backend.load()
    assert fake_llm().INSTANCES == []  # its top-level LLM (the engine path) is not taken


def test_a_prompt_above_max_num_tokens_is_refused_unless_chunked_prefill(
        trtllm_layout: Callable[[str], ModuleType], tiny_model_dir: Path,
        tmp_path: Path) -> None:
    trtllm_layout(AFTER_REMOVAL)
    tight = {**PYTORCH, "max_num_tokens": 8, "max_seq_len": 20}
    backend = backend_of(tiny_model_dir, tmp_path / "c", tensorrt=tight)

    problems = backend.preflight()
    assert len(problems) == 2, problems
    assert "prompts of 16 tokens" in problems[0] and "enable_chunked_prefill" in problems[0]
    assert "max_seq_len is 20" in problems[1] and "needs 28" in problems[1]
    # the library refuses the same request: preflight says it first
    backend.load()
    with pytest.raises(BackendError, match="max_num_tokens"):
        backend.generate([Request(0, backend.vocab_ids()[:16], 4)])
    backend.unload()
    chunked = backend_of(tiny_model_dir, tmp_path / "c", tensorrt={**PYTORCH, "max_num_tokens": 8},
                         passthrough_kwargs={"enable_chunked_prefill": True})
    assert chunked.preflight() == []


@pytest.mark.parametrize("name", ["cuda_graph_config", "attn_backend", "max_seq_len",
                                  "build_config"])
def test_passthrough_may_not_replace_what_the_pytorch_runtime_sets(
        trtllm_layout: Callable[[str], ModuleType], name: str, tiny_model_dir: Path,
        tmp_path: Path) -> None:
    trtllm_layout(AFTER_REMOVAL)
    backend = backend_of(tiny_model_dir, tmp_path / "c", passthrough_kwargs={name: None})

    (problem,) = backend.preflight()
    assert f"passthrough_kwargs {name}" in problem and "tensorrt:" in problem
    with pytest.raises(BackendError, match=name):
        backend.load()


def test_a_library_refusal_at_load_is_a_backend_error_with_its_fix(
        trtllm_layout: Callable[[str], ModuleType], tiny_model_dir: Path,
        tmp_path: Path) -> None:
    trtllm_layout(AFTER_REMOVAL)
    backend = backend_of(tiny_model_dir, tmp_path / "c",
                         passthrough_kwargs={"not_an_llm_argument": 1})

    with pytest.raises(BackendError, match="PyTorch runtime failed to load") as raised:
        backend.load()
    assert "not_an_llm_argument" in raised.value.message and raised.value.fix


def test_the_decoding_the_library_reads_is_recorded(
        trtllm_layout: Callable[[str], ModuleType], tiny_model_dir: Path,
        tmp_path: Path) -> None:
    trtllm_layout("1.2.1")
    result = execute(run_spec(tiny_model_dir, tmp_path / "c", decoder={"mode": "sampling"}),
                     tmp_path / "run")
    read = result.effective_parameters["decoding_by_library"]

    assert read["greedy"] is False
    assert (read["top_k"], read["top_p"], read["temperature"]) == (0, 1.0, 1.0)


@pytest.mark.parametrize(("version", "greedy"), [("1.0.0", False), ("1.2.1", False),
                                                 (AFTER_REMOVAL, True)])
def test_each_release_reads_the_servers_greedy_request_by_its_own_rule(
        trtllm_layout: Callable[[str], ModuleType], version: str, greedy: bool) -> None:
    from harness.backends.tensorrt.backend import library_decoding

    trtllm_layout(version)
    # what a greedy request through trtllm-serve becomes: top_k 1, the server's top_p 1.0
    read = library_decoding({"top_k": 1, "top_p": 1.0, "temperature": 1.0, "max_tokens": 4})

    assert read["greedy"] is greedy and read["argmax"] is True


def test_graph_sizes_no_step_can_form_are_refused(
        trtllm_layout: Callable[[str], ModuleType], tiny_model_dir: Path,
        tmp_path: Path) -> None:
    trtllm_layout(AFTER_REMOVAL)
    backend = backend_of(tiny_model_dir, tmp_path / "c", n=40, tensorrt={
        **PYTORCH, "max_batch_size": 4, "cuda_graph_batch_sizes": [8, 16]})

    (problem,) = backend.preflight()
    assert "cuda_graph_batch_sizes [8, 16]" in problem and "CUDA graphs would be off" in problem
    partly = backend_of(tiny_model_dir, tmp_path / "c", tensorrt={
        **PYTORCH, "max_batch_size": 4, "cuda_graph_batch_sizes": [2, 8]})
    (problem,) = partly.preflight()
    assert "only for [2]" in problem


@pytest.mark.parametrize("max_seq_len", [None, 1 << 20])
def test_the_sequence_limit_is_checked_against_the_models_own(
        trtllm_layout: Callable[[str], ModuleType], max_seq_len: int | None,
        tiny_model_dir: Path, tmp_path: Path) -> None:
    # the PyTorch runtime lowers max_seq_len to the model's and cuts longer outputs short with a
    # warning, rather than refusing them: unset or set above it, the model's limit holds
    trtllm_layout(AFTER_REMOVAL)
    positions = json.loads((tiny_model_dir / "config.json").read_text())[
        "max_position_embeddings"]
    limits = {"max_num_tokens": positions} | ({"max_seq_len": max_seq_len} if max_seq_len else {})
    backend = backend_of(tiny_model_dir, tmp_path / "c", input_len=positions - 4, output_len=8,
                         tensorrt={**PYTORCH, **limits})

    (problem,) = backend.preflight()
    assert f"at most {positions} tokens" in problem and f"needs {positions + 4}" in problem


@pytest.mark.parametrize(("checkpoint", "limit"), [
    ({"max_position_embeddings": 4096}, 4096),
    ({"max_position_embeddings": 4096, "rope_scaling": {"type": "linear", "factor": 4.0}},
     16384),
    ({"max_position_embeddings": 4096, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}},
     4096),
    ({"max_position_embeddings": 4096, "rope_scaling": {"type": "yarn", "factor": 4.0}}, 4096),
    ({"text_config": {"max_position_embeddings": 8192}}, 8192),
    ({}, 2048),
])
def test_the_models_limit_is_inferred_as_the_runtime_infers_it(
        checkpoint: dict[str, Any], limit: int) -> None:
    from harness.backends.tensorrt import pytorch_runtime

    assert pytorch_runtime.model_max_seq_len(checkpoint) == limit


def test_graph_sizes_above_every_step_of_the_workload_are_refused(
        trtllm_layout: Callable[[str], ModuleType], tiny_model_dir: Path,
        tmp_path: Path) -> None:
    # a graph replays only for a decode step of exactly its batch size; 6 requests never
    # form a step of 8 or 16
    trtllm_layout(AFTER_REMOVAL)
    backend = backend_of(tiny_model_dir, tmp_path / "c", tensorrt={
        **PYTORCH, "cuda_graph_batch_sizes": [8, 16]})

    (problem,) = backend.preflight()
    assert "all above the 6 requests" in problem


def test_passthrough_backend_is_refused_on_the_engine_runtime(
        trtllm_layout: Callable[[str], ModuleType], tiny_model_dir: Path,
        tmp_path: Path) -> None:
    # BaseLLM takes backend="pytorch" and would build no engine under the engine's name
    trtllm_layout("1.2.1")
    backend = backend_of(tiny_model_dir, tmp_path / "c", tensorrt={"max_batch_size": 4},
                         passthrough_kwargs={"backend": "pytorch"})

    (problem,) = backend.preflight()
    assert "passthrough_kwargs backend" in problem


@pytest.mark.parametrize("runtime", ["engine", "pytorch"])
def test_a_library_that_fails_to_import_is_a_backend_error(
        trtllm_layout: Callable[[str], ModuleType], runtime: str, tiny_model_dir: Path,
        tmp_path: Path, forget: Callable[[], None]) -> None:
    trtllm = trtllm_layout("1.2.1")
    init = Path(trtllm.__file__)
    init.write_text("raise OSError('libcuda.so.1: cannot open shared object file')\n")
    forget()
    backend = backend_of(tiny_model_dir, tmp_path / "c", tensorrt={"runtime": runtime})

    with pytest.raises(BackendError, match="fails to import: OSError: libcuda") as raised:
        backend.load()
    assert raised.value.fix and "driver" in raised.value.fix
