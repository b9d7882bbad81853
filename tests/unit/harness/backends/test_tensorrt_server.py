"""TensorRT-LLM serving through ``trtllm-serve`` (``load.client: openai_server``).

The server is the fake ``trtllm-serve`` (tests/fakes/tensorrt_llm/commands/serve.py): a real
process with the real command's options, the LLM arguments it makes from them, the fake
TensorRT-engine LLM's checks, and the completions route's schema and stream. The client is the
real ``openai`` package.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from llem_testkit.gpu_runs import execute_on_fake_gpu

from harness.backends import openai_server
from harness.backends.base import Request
from harness.backends.tensorrt import TensorRtBackend, server
from harness.backends.tensorrt.backend import engine_llm_class
from harness.errors import BackendError
from harness.schema.config import ExperimentConfig
from harness.schema.result import ExperimentResult
from harness.schema.run_spec import RunSpec
from harness.testing import FakeGpu

POWER_W = 150.0

pytest.importorskip("openai", reason="the openai client is a dev dependency")


def run_spec(model_dir: Path, cache_dir: Path, **overrides: Any) -> RunSpec:
    config = {"model": str(model_dir), "backend": "tensorrt", "precision": "fp16", "n": 24,
              "input_len": 16, "output_len": 12, "warmup": {"n_warmup": 1, "min_seconds": 0},
              "baseline": {"enabled": False}, "energy": {"sample_interval_ms": 20},
              "tensorrt": {"max_batch_size": 4},
              "load": {"mode": "serving", "arrival": "constant", "request_rate": 10.0,
                       "ramp_up_s": 0.1, "client": "openai_server"},
              **overrides}
    return RunSpec(run_id="r1", config=ExperimentConfig(**config),
                   engine_cache_dir=str(cache_dir))


def execute(spec: RunSpec, run_dir: Path) -> ExperimentResult:
    return execute_on_fake_gpu(spec, run_dir, POWER_W)


def loaded_settings(log: str) -> dict[str, Any]:
    """What the fake server's engine ran with, from the line it logs when loaded."""
    line = next(line for line in log.splitlines() if "engine loaded:" in line)
    return dict(json.loads(line.split("engine loaded:", 1)[1]))


# -- the command and the request -------------------------------------------------------------


def test_the_command_serves_the_engine_with_its_own_limits_on_loopback(
        documented: ModuleType, tmp_path: Path) -> None:
    engine = {"build_config": {"max_batch_size": 4, "max_num_tokens": 256, "max_seq_len": 96,
                               "max_input_len": 64}}
    command = server.server_command(tmp_path / "engine", tmp_path / "model", "engine",
                                    server.engine_limits(engine, {}), (2, 1), 3,
                                    tmp_path / "options.yaml", 8123)

    assert command[1:5] == ["-m", server.MODULE, "serve", str(tmp_path / "engine")]
    flag = {command[i]: command[i + 1] for i in range(5, len(command) - 1, 2)}
    assert flag["--backend"] == "tensorrt"  # trtllm-serve's default is the PyTorch runtime
    assert flag["--host"] == "127.0.0.1" and flag["--port"] == "8123"
    assert flag["--tokenizer"] == str(tmp_path / "model")
    assert (flag["--max_batch_size"], flag["--max_num_tokens"], flag["--max_seq_len"]) == (
        "4", "256", "96")
    assert flag["--max_beam_width"] == "3" and (flag["--tp_size"], flag["--pp_size"]) == ("2", "1")
    assert flag["--extra_llm_api_options"] == str(tmp_path / "options.yaml")
    # every option llem passes is one the published command has, and the fake's command too
    assert set(flag) <= set(documented.SERVE_OPTIONS)
    # run-time limits the study sets are what the in-process path passes: they win
    capped = server.server_command(tmp_path / "engine", tmp_path / "model", "engine",
                                   server.engine_limits(engine, {"max_batch_size": 2}), (1, 1),
                                   1, tmp_path / "o.yaml", 1)
    assert capped[capped.index("--max_batch_size") + 1] == "2"
    assert capped[capped.index("--max_num_tokens") + 1] == "256"


def test_the_options_file_puts_llems_kv_cache_settings_over_passthrough() -> None:
    options = server.llm_api_options({"enable_block_reuse": False},
                                     {"kv_cache_config": {"enable_block_reuse": True},
                                      "enable_chunked_prefill": True})

    assert options == {"scheduler_config": server.IN_PROCESS_SCHEDULER,
                       "kv_cache_config": {"enable_block_reuse": False},
                       "enable_chunked_prefill": True}
    # a scheduler the study passes replaces the in-process default, as it would in process
    chosen = server.llm_api_options({}, {"scheduler_config": {"dynamic_batch_config": {}}})
    assert chosen["scheduler_config"] == {"dynamic_batch_config": {}}


@pytest.mark.parametrize("decoder", [{"mode": "greedy"}, {"mode": "sampling", "temperature": 0.7},
                                     {"mode": "beam", "num_beams": 2}])
def test_each_decoder_becomes_a_request_the_servers_schema_accepts(
        documented: ModuleType, trtllm: ModuleType, tiny_model_dir: Path,
        decoder: dict[str, Any]) -> None:
    config = ExperimentConfig(model=str(tiny_model_dir), backend="tensorrt", precision="fp16",
                              n=2, input_len=4, output_len=5, decoder=decoder)
    backend = TensorRtBackend(config, "cuda:0")
    sampling = backend.sampling_kwargs(5)
    kwargs = server.completion_kwargs(Request(0, [5, 6, 7], 5), "engine", sampling)
    body = {**{k: v for k, v in kwargs.items() if k != "extra_body"}, **kwargs["extra_body"]}

    serve = importlib.import_module("tensorrt_llm.commands.serve")
    request = serve.CompletionRequest.model_validate(body)  # extra fields would be a 400
    assert set(body) <= set(documented.COMPLETION_REQUEST_FIELDS)
    params = request.to_sampling_params()
    assert (params.max_tokens, params.min_tokens, params.ignore_eos) == (5, 5, True)
    assert params.detokenize is False and request.prompt == [5, 6, 7]
    # the same decoding as in process, less what the server owns
    for name, value in sampling.items():
        if name not in server.SERVER_OWNED:
            assert getattr(params, name) == value, name


# -- whole runs --------------------------------------------------------------------------------


def test_a_serving_run_through_trtllm_serve(trtllm: ModuleType, server_on_fake_gpus: None,
                                            tiny_model_dir: Path, tmp_path: Path,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    result = execute(run_spec(tiny_model_dir, tmp_path / "engines"), tmp_path / "run")
    log = capfd.readouterr().err

    serving = result.serving
    assert serving is not None and serving.client == "openai_server"
    assert serving.requests_total == 24 and serving.requests_failed == 0
    # arrivals every 100 ms, the last at 2.3 s; the window [100 ms, 2.3 s) holds arrivals 1-22
    assert serving.requests_in_window == 22
    assert serving.ttft is not None and serving.ttft.count == 22
    assert not serving.saturated, serving.saturation_reason
    assert result.throughput.output_tokens == serving.output_tokens_in_window > 0
    params = result.effective_parameters
    assert params["engine_runner"].startswith("trtllm-serve")
    assert params["server_command"][params["server_command"].index("--backend") + 1] == "tensorrt"
    assert params["server_llm_api_options"] == {
        "scheduler_config": server.IN_PROCESS_SCHEDULER,
        "kv_cache_config": {"enable_block_reuse": False}}
    assert "end_id" not in params and params["detokenize"] is False
    # greedy: top_k 1, and what the server fills in for the fields the request leaves out
    assert (params["top_k"], params["temperature"], params["top_p"]) == (1, 1.0, 1.0)
    assert params["cross_request_cache"]["enabled"] is False
    # the engine in the server ran with the built limit and without block reuse
    ran = loaded_settings(log)
    assert ran["max_batch_size"] == ran["run_time_max_batch_size"] == 4
    assert ran["kv_cache_config"]["enable_block_reuse"] is False
    # the in-process scheduler, not trtllm-serve's own (which tunes the batch size)
    assert ran["scheduler_config"]["dynamic_batch_config"] is None
    assert fake_builds() == 1  # built here, in the harness, then served by the server


def fake_builds() -> int:
    return int(importlib.import_module("tensorrt_llm.llmapi.llm").BUILDS)


def prebuilt_engine(model_dir: Path, target: Path) -> Path:
    builder = engine_llm_class()(model=str(model_dir), tokenizer=str(model_dir),
                                 max_batch_size=4)
    builder.save(str(target))
    builder.shutdown()
    return target


def test_a_cache_hit_serves_without_building(trtllm: ModuleType, server_on_fake_gpus: None,
                                             tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = run_spec(tiny_model_dir, tmp_path / "engines", n=4)
    first = execute(spec, tmp_path / "a")
    second = execute(spec, tmp_path / "b")

    assert first.engine_cache is not None and first.engine_cache.hit is False
    assert second.engine_cache is not None and second.engine_cache.hit is True
    assert fake_builds() == 1
    assert second.serving is not None and second.serving.requests_failed == 0
    # the builder's LLM gave its GPUs back before the server loaded the engine
    assert all(llm.is_shut_down for llm in importlib.import_module(
        "tensorrt_llm.llmapi.llm").INSTANCES)


def _backend(model_dir: Path, cache: Path, **overrides: Any) -> TensorRtBackend:
    config = run_spec(model_dir, cache, **overrides).config
    backend = TensorRtBackend(config, "cuda:0")
    backend.gpu_info = [FakeGpu([(0.0, POWER_W)], info={"compute_capability": "9.0"}).info()]
    backend.engine_cache_root = cache
    return backend


def test_the_server_and_its_options_file_are_gone_after_unload(
        trtllm: ModuleType, tiny_model_dir: Path, tmp_path: Path) -> None:
    backend = _backend(tiny_model_dir, tmp_path / "engines")
    backend.load()
    started = backend._server
    options = backend._options_file
    assert started is not None and started.pid is not None and options is not None
    pid = started.pid
    assert options.is_file()
    backend.unload()

    assert not options.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_server_that_refuses_its_arguments_fails_the_load_with_its_log(
        trtllm: ModuleType, tiny_model_dir: Path, tmp_path: Path) -> None:
    # a prebuilt engine: nothing is built here, so the server is the one to read the argument
    engine = prebuilt_engine(tiny_model_dir, tmp_path / "engine")
    backend = _backend(tiny_model_dir, tmp_path / "engines",
                       tensorrt={"engine_dir": str(engine)},
                       passthrough_kwargs={"no_such_llm_argument": 1})
    with pytest.raises(BackendError) as raised:
        backend.load()
    backend.unload()

    assert "trtllm-serve exited with status" in raised.value.message
    assert "TrtLlmArgs got invalid argument: no_such_llm_argument" in raised.value.message


def test_limits_above_the_engines_are_refused_by_the_server_so_the_command_repeats_them(
        trtllm: ModuleType, tiny_model_dir: Path, tmp_path: Path) -> None:
    # trtllm-serve passes its own default limits when none are given (max_batch_size 2048);
    # TensorRT-LLM 1.0 refuses run-time limits above the engine's built ones.
    engine = prebuilt_engine(tiny_model_dir, tmp_path / "engine")
    options = server.write_options(server.llm_api_options({"enable_block_reuse": False}, {}))
    try:
        for engine_config, expect_start in (({}, False),
                                            (json.loads((engine / "config.json").read_text()),
                                             True)):
            port = openai_server.free_port()
            command = server.server_command(engine, tiny_model_dir, "engine",
                                            server.engine_limits(engine_config, {}), (1, 1), 1,
                                            options, port)
            process = openai_server.LoopbackServer(server.LABEL, command, port)
            try:
                if expect_start:
                    process.start(timeout_s=120)
                else:
                    with pytest.raises(BackendError, match=r"max_batch_size \[2048\]"):
                        process.start(timeout_s=120)
            finally:
                process.stop(grace_s=10)
    finally:
        options.unlink()


def test_a_server_that_dies_during_the_run_fails_it(
        trtllm: ModuleType, server_on_fake_gpus: None, tiny_model_dir: Path,
        tmp_path: Path) -> None:
    # its requests would fail one by one and the run would read as saturated
    import asyncio
    import signal

    backend = _backend(tiny_model_dir, tmp_path / "engines")
    backend.load()
    try:
        assert backend._server is not None and backend._server.pid is not None
        pid = backend._server.pid

        async def drive(stream: Any) -> int:
            os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.5)
            failed = 0
            try:
                async for _ in stream(Request(0, [5, 6, 7], 4), "k"):
                    pass
            except Exception:  # noqa: BLE001 - the driver records a failed request
                failed += 1
            return failed

        with pytest.raises(BackendError, match="exited with status -9 during the run"):
            backend.serve(drive)
    finally:
        backend.unload()


def test_the_fake_server_command_has_the_documented_options(documented: ModuleType,
                                                            trtllm: ModuleType) -> None:
    serve = importlib.import_module("tensorrt_llm.commands.serve")
    names = {opt for param in serve.serve.params for opt in getattr(param, "opts", [])}

    assert set(documented.SERVE_OPTIONS) <= names
    backend = next(p for p in serve.serve.params if p.name == "backend")
    assert backend.default == "pytorch" and "tensorrt" in backend.type.choices
    fields = set(inspect.signature(serve.CompletionRequest).parameters)
    assert set(documented.COMPLETION_REQUEST_FIELDS) <= fields


def test_an_unknown_option_is_a_usage_error(trtllm: ModuleType, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", server.MODULE, "serve", str(tmp_path),
                           "--no_such_option", "1"], capture_output=True, text=True,
                          check=False, timeout=120)

    assert done.returncode == 2 and "no_such_option" in done.stderr
