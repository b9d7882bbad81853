"""The fake ``tensorrt_llm`` itself, in each release layout it models (tensorrt_llm_layouts):
which modules exist, the engine path's version-dependent limits and warning, the PyTorch
runtime's ``LLM`` (defaults, validation, resolved ``llm.args``, generation) and the fake
``trtllm-serve`` with ``--backend pytorch``."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness.backends import openai_server
from harness.backends.tensorrt import runtimes

EOS_ID = 1
MAX_POSITIONS = 256
SERVE = "tensorrt_llm.commands.serve"

Install = Callable[[str], ModuleType]


def checkpoint_dir(directory: Path) -> Path:
    """A Hugging Face checkpoint directory as far as the fake reads one (its config.json)."""
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(
        {"architectures": ["LlamaForCausalLM"], "vocab_size": 64, "eos_token_id": EOS_ID,
         "max_position_embeddings": MAX_POSITIONS, "torch_dtype": "float16"}))
    return directory


@pytest.fixture
def checkpoint(tmp_path: Path) -> str:
    return str(checkpoint_dir(tmp_path / "checkpoint"))


def fake_llm() -> ModuleType:
    return importlib.import_module("tensorrt_llm.llmapi.llm")


def engine_from(trtllm: ModuleType, checkpoint: str, target: Path, **kwargs: Any) -> str:
    """An engine the fake's TensorRT-engine LLM built from ``checkpoint`` and saved."""
    engine_llm = importlib.import_module("tensorrt_llm._tensorrt_engine").LLM
    builder = engine_llm(model=checkpoint, tokenizer=checkpoint, **kwargs)
    builder.save(str(target))
    builder.shutdown()
    return str(target)


# -- what each layout has ----------------------------------------------------------------------

HAS_ENGINE = {"1.0.0": True, "1.2.1": True, "1.4.0rc1": False}


def test_the_layouts_are_the_three_releases_each_with_its_source(layouts: ModuleType) -> None:
    assert list(layouts.LAYOUTS) == list(HAS_ENGINE)
    assert all("(" in described and ")" in described for described in layouts.LAYOUTS.values())


def test_each_layout_has_the_modules_of_its_release(layout_version: str,
                                                    trtllm_layout: Install) -> None:
    trtllm = trtllm_layout(layout_version)
    engine = HAS_ENGINE[layout_version]

    assert trtllm.__version__ == layout_version
    assert hasattr(trtllm.llmapi, "BuildConfig") is engine
    assert hasattr(fake_llm(), "_TrtLLM") is engine
    for module in ("tensorrt_llm._tensorrt_engine", "tensorrt_llm.builder"):
        if engine:
            importlib.import_module(module)
        else:
            with pytest.raises(ModuleNotFoundError):
                importlib.import_module(module)
    # the top-level LLM is the PyTorch runtime in every 1.x layout, and the same as llmapi's
    assert trtllm.LLM is trtllm.llmapi.LLM and issubclass(trtllm.LLM, fake_llm()._TorchLLM)
    assert trtllm.llmapi.CudaGraphConfig is not None
    # what the harness reads from the files without importing the package
    found = runtimes.installed()
    assert found is not None and found.version == layout_version and found.engine is engine


def test_a_0x_layout_has_the_engine_llm_at_the_top_and_no_engine_module(
        trtllm_layout: Install) -> None:
    trtllm = trtllm_layout("0.21.0")

    assert trtllm.LLM is fake_llm()._TrtLLM and hasattr(trtllm.llmapi, "BuildConfig")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("tensorrt_llm._tensorrt_engine")


# -- the TensorRT-engine path: legacy warning, limits ------------------------------------------


def legacy_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tensorrt_llm" and "legacy" in r.getMessage()]


@pytest.mark.parametrize(("version", "warned"), [("1.0.0", 0), ("1.2.1", 1)])
def test_the_engine_path_warns_it_is_legacy_once_from_1_2(
        trtllm_layout: Install, checkpoint: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, version: str, warned: int) -> None:
    trtllm = trtllm_layout(version)
    caplog.set_level(logging.WARNING, logger="tensorrt_llm")
    engine = engine_from(trtllm, checkpoint, tmp_path / "engine")
    engine_from(trtllm, engine, tmp_path / "again")  # loads the engine: a second LLM
    trtllm.LLM(model=checkpoint).shutdown()  # the PyTorch runtime never warns

    assert len(legacy_warnings(caplog)) == warned
    assert fake_llm().BUILDS == 1 and fake_llm().LOADS == 1


def test_run_time_limits_above_the_built_ones_raise_in_1_0(
        trtllm_layout: Install, checkpoint: str, tmp_path: Path) -> None:
    trtllm = trtllm_layout("1.0.0")
    engine = engine_from(trtllm, checkpoint, tmp_path / "engine", max_batch_size=4)
    engine_llm = importlib.import_module("tensorrt_llm._tensorrt_engine").LLM

    with pytest.raises(ValueError, match=r"max_batch_size \[8\] is greater than "
                                         r"build_config.max_batch_size \[4\]"):
        engine_llm(model=engine, tokenizer=checkpoint, max_batch_size=8)


def test_run_time_limits_above_the_built_ones_are_clamped_with_a_warning_in_1_2(
        trtllm_layout: Install, checkpoint: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    trtllm = trtllm_layout("1.2.1")
    engine = engine_from(trtllm, checkpoint, tmp_path / "engine", max_batch_size=4)
    engine_llm = importlib.import_module("tensorrt_llm._tensorrt_engine").LLM
    caplog.set_level(logging.WARNING, logger="tensorrt_llm")

    llm = engine_llm(model=engine, tokenizer=checkpoint, max_batch_size=8, max_num_tokens=128)

    assert (llm.args.max_batch_size, llm.args.max_num_tokens) == (4, 128)
    assert llm.args.build_config.max_batch_size == 4
    assert [r.getMessage() for r in caplog.records if "max_batch_size [8]" in r.getMessage()]
    llm.shutdown()


def test_after_the_removal_the_tensorrt_backend_is_a_value_error(
        trtllm_layout: Install, checkpoint: str) -> None:
    trtllm = trtllm_layout("1.4.0rc1")

    with pytest.raises(ValueError, match="PyTorch is the only backend"):
        trtllm.LLM(model=checkpoint, backend="tensorrt")
    with pytest.raises(ValueError, match="got invalid argument: build_config"):
        trtllm.LLM(model=checkpoint, build_config={})
    assert fake_llm().INSTANCES == []


# -- the PyTorch runtime's LLM ----------------------------------------------------------------


def test_the_pytorch_llm_resolves_its_defaults(layout_version: str, trtllm_layout: Install,
                                               checkpoint: str) -> None:
    trtllm = trtllm_layout(layout_version)
    llm = trtllm.LLM(model=checkpoint, tokenizer=checkpoint)
    args = llm.args

    assert (args.max_batch_size, args.max_num_tokens, args.max_input_len,
            args.max_beam_width) == (2048, 8192, 1024, 1)
    assert args.max_seq_len == MAX_POSITIONS  # from the checkpoint
    assert args.kv_cache_config.enable_block_reuse is True
    expected_fraction = 0.9 if layout_version == "1.4.0rc1" else None
    assert args.kv_cache_config.free_gpu_memory_fraction == expected_fraction
    graphs = args.cuda_graph_config
    assert graphs.max_batch_size == 128 and graphs.enable_padding is False
    assert graphs.batch_sizes == [*range(1, 32), 32, 64, 128]
    assert (args.attn_backend, args.disable_overlap_scheduler) == ("TRTLLM", False)
    assert (args.backend, args.dtype, args.tensor_parallel_size,
            args.pipeline_parallel_size) == ("pytorch", "auto", 1, 1)
    # it loaded the checkpoint and built nothing
    assert (fake_llm().TORCH_LOADS, fake_llm().BUILDS) == (1, 0)
    assert fake_llm().INSTANCES[0] is llm and len(fake_llm().INSTANCES) == 1
    llm.shutdown()
    assert llm.is_shut_down


def test_limits_passed_as_none_keep_the_defaults(trtllm_layout: Install,
                                                 checkpoint: str) -> None:
    trtllm = trtllm_layout("1.4.0rc1")
    args = trtllm.LLM(model=checkpoint, max_batch_size=None, max_num_tokens=None,
                      max_seq_len=None, max_beam_width=None).args

    assert (args.max_batch_size, args.max_num_tokens, args.max_seq_len,
            args.max_beam_width) == (2048, 8192, MAX_POSITIONS, 1)


def test_the_pytorch_llm_reads_back_what_it_was_given(trtllm_layout: Install,
                                                      checkpoint: str) -> None:
    trtllm = trtllm_layout("1.2.1")
    llmapi = trtllm.llmapi
    llm = trtllm.LLM(model=checkpoint, tokenizer=checkpoint, tensor_parallel_size=1,
                     dtype="bfloat16", pipeline_parallel_size=1, max_batch_size=16,
                     max_num_tokens=1024, max_seq_len=200, max_beam_width=2,
                     kv_cache_config={"enable_block_reuse": False,
                                      "free_gpu_memory_fraction": 0.4},
                     cuda_graph_config=None, attn_backend="VANILLA",
                     disable_overlap_scheduler=True, enable_chunked_prefill=True,
                     build_config=None)  # 1.1-era TorchLlmArgs: a dummy build_config
    args = llm.args

    assert (args.max_batch_size, args.max_num_tokens, args.max_seq_len,
            args.max_beam_width, args.dtype) == (16, 1024, 200, 2, "bfloat16")
    assert args.kv_cache_config == llmapi.KvCacheConfig(enable_block_reuse=False,
                                                        free_gpu_memory_fraction=0.4)
    assert args.cuda_graph_config is None
    assert (args.attn_backend, args.disable_overlap_scheduler) == ("VANILLA", True)
    assert args.enable_chunked_prefill is True and not hasattr(args, "build_config")


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"fast_build": True}, "LLM got invalid argument: fast_build"),  # a TrtLlmArgs field
    ({"no_such_argument": 1}, "LLM got invalid argument: no_such_argument"),
    ({"kv_cache_config": 0.5}, "kv_cache_config must be a KvCacheConfig"),
    ({"cuda_graph_config": [1, 2]}, "cuda_graph_config must be a CudaGraphConfig"),
    ({"cuda_graph_config": {"batch_sizes": [1, 2], "max_batch_size": 8}},
     "don't set both"),
    ({"attn_backend": "FLASH"}, "attn_backend must be one of VANILLA, TRTLLM, FLASHINFER"),
    ({"disable_overlap_scheduler": "yes"}, "disable_overlap_scheduler must be a bool"),
    ({"dtype": "float8"}, "unsupported dtype"),
    ({"backend": "tensorrt"}, "backend 'tensorrt' is not supported"),
])
def test_the_pytorch_llm_refuses_bad_arguments(trtllm_layout: Install, checkpoint: str,
                                               kwargs: dict[str, Any], error: str) -> None:
    trtllm = trtllm_layout("1.0.0")

    with pytest.raises(ValueError, match=error):
        trtllm.LLM(model=checkpoint, **kwargs)
    assert fake_llm().INSTANCES == [] and fake_llm().TORCH_LOADS == 0


def test_the_pytorch_llm_refuses_an_engine_directory(trtllm_layout: Install, checkpoint: str,
                                                     tmp_path: Path) -> None:
    trtllm = trtllm_layout("1.0.0")
    engine = engine_from(trtllm, checkpoint, tmp_path / "engine")

    with pytest.raises(ValueError, match="is a TensorRT engine directory"):
        trtllm.LLM(model=engine, tokenizer=checkpoint)
    assert fake_llm().TORCH_LOADS == 0


@pytest.mark.parametrize(("kwargs", "batch_sizes", "maximum"), [
    ({"enable_padding": True}, [1, 2, 4, *range(8, 129, 8)], 128),
    ({"max_batch_size": 512}, [*range(1, 32), 32, 64, 128, 256, 512], 512),
    ({"max_batch_size": 20}, list(range(1, 21)), 20),
    ({"max_batch_size": 256, "enable_padding": True},
     [1, 2, 4, *range(8, 129, 8), 192, 256], 256),
    ({"batch_sizes": [8, 1, 4]}, [1, 4, 8], 8),
    ({"batch_sizes": [8, 1, 4], "max_batch_size": 8}, [1, 4, 8], 8),
])
def test_cuda_graph_config_resolves_batch_sizes(trtllm_layout: Install, kwargs: dict[str, Any],
                                                batch_sizes: list[int], maximum: int) -> None:
    config = trtllm_layout("1.4.0rc1").llmapi.CudaGraphConfig(**kwargs)

    assert (config.batch_sizes, config.max_batch_size) == (batch_sizes, maximum)


# -- generation on the PyTorch runtime ---------------------------------------------------------


@pytest.fixture
def torch_llm(trtllm_layout: Install, checkpoint: str) -> Iterator[Any]:
    trtllm = trtllm_layout("1.4.0rc1")
    llm = trtllm.LLM(model=checkpoint, tokenizer=checkpoint, max_seq_len=40, max_num_tokens=16)
    yield llm
    llm.shutdown()


def test_generation_has_exact_lengths_with_min_tokens_and_ignore_eos(torch_llm: Any) -> None:
    sampling = importlib.import_module("tensorrt_llm").SamplingParams
    fixed = sampling(max_tokens=9, min_tokens=9, ignore_eos=True, top_k=1)
    free = sampling(max_tokens=9)

    outputs = torch_llm.generate([[5, 6, 7], [8, 9]], [fixed, free])

    assert [len(o.outputs[0].token_ids) for o in outputs] == [9, 2]  # EOS is the third token
    assert [o.outputs[0].finish_reason for o in outputs] == ["length", "stop"]
    assert EOS_ID in outputs[0].outputs[0].token_ids  # generated past EOS, not stopped by it


def test_streaming_yields_one_token_per_update(torch_llm: Any) -> None:
    sampling = importlib.import_module("tensorrt_llm").SamplingParams
    params = sampling(max_tokens=5, min_tokens=5, ignore_eos=True)

    async def stream() -> list[list[int]]:
        diffs = []
        async for update in torch_llm.generate_async([5, 6, 7], params, streaming=True):
            diffs.append(list(update.outputs[0].token_ids_diff))
        return diffs

    diffs = asyncio.run(stream())
    assert [len(diff) for diff in diffs] == [1] * 5
    with pytest.raises(RuntimeError):  # streaming needs a running event loop
        torch_llm.generate_async([5, 6, 7], params, streaming=True)


def test_the_pytorch_runtime_checks_max_num_tokens_and_clamps_to_max_seq_len(
        trtllm_layout: Install, checkpoint: str, torch_llm: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    sampling = importlib.import_module("tensorrt_llm").SamplingParams

    # prompt + max_tokens beyond max_seq_len (40) is not refused: the output is cut short
    clamped = torch_llm.generate([5] * 10, sampling(max_tokens=31, ignore_eos=True))
    assert len(clamped.outputs[0].token_ids) == 30
    assert any("clamped" in record.getMessage() for record in caplog.records)
    with pytest.raises(ValueError, match=r"should not exceed max_num_tokens \(16\)"):
        torch_llm.generate([5] * 17, sampling(max_tokens=1))
    trtllm = importlib.import_module("tensorrt_llm")
    chunked = trtllm.LLM(model=checkpoint, max_seq_len=40, max_num_tokens=16,
                         enable_chunked_prefill=True, max_input_len=8)
    assert len(chunked.generate([5] * 17, sampling(max_tokens=2)).outputs[0].token_ids) <= 2
    chunked.shutdown()
    torch_llm.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        torch_llm.generate([5], sampling(max_tokens=1))


# -- trtllm-serve --backend pytorch ------------------------------------------------------------


def start_serve(args: list[str], log: Path, timeout_s: float = 60) -> subprocess.Popen[bytes]:
    """The fake trtllm-serve, once it listens (its output in ``log``)."""
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", SERVE, "serve", *args],
                                   stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while "Uvicorn running" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"trtllm-serve did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return process


def loaded(log: Path) -> dict[str, Any]:
    line = next(line for line in log.read_text().splitlines() if "engine loaded:" in line)
    return dict(json.loads(line.split("engine loaded:", 1)[1]))


def test_the_server_serves_a_checkpoint_on_the_pytorch_runtime(
        layout_version: str, trtllm_layout: Install, checkpoint: str, tmp_path: Path) -> None:
    import openai

    trtllm_layout(layout_version)
    options = tmp_path / "options.json"
    options.write_text(json.dumps({
        "scheduler_config": {"capacity_scheduler_policy": "GUARANTEED_NO_EVICT"},
        "kv_cache_config": {"enable_block_reuse": False}, "cuda_graph_config": None,
        "attn_backend": "FLASHINFER", "disable_overlap_scheduler": True,
        "max_num_tokens": 1024, "enable_chunked_prefill": True}))
    port = openai_server.free_port()
    log = tmp_path / "serve.log"
    process = start_serve([checkpoint, "--tokenizer", checkpoint, "--backend", "pytorch",
                           "--host", "127.0.0.1", "--port", str(port), "--max_batch_size", "8",
                           "--max_num_tokens", "2048", "--max_beam_width", "1", "--tp_size",
                           "1", "--pp_size", "1", "--extra_llm_api_options", str(options)],
                          log)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
        chunks = list(client.completions.create(
            model="checkpoint", prompt=[5, 6, 7], max_tokens=6, stream=True,
            stream_options={"include_usage": True},
            extra_body={"min_tokens": 6, "ignore_eos": True, "detokenize": False}))
    finally:
        process.terminate()
        process.wait(timeout=30)

    tokens = [t for chunk in chunks for choice in chunk.choices for t in choice.token_ids]
    assert len(tokens) == 6 and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6 and chunks[-1].usage.prompt_tokens == 3
    ran = loaded(log)
    assert ran["backend"] == "pytorch" and ran["max_batch_size"] == 8
    # the options file wins over the flags before the removal, a given flag wins after it
    assert ran["max_num_tokens"] == (2048 if layout_version == "1.4.0rc1" else 1024)
    assert ran["max_seq_len"] == MAX_POSITIONS and ran["max_beam_width"] == 1
    # the file's kv_cache_config replaced the flag's whole object: the release's default
    assert ran["kv_cache_config"] == {
        "enable_block_reuse": False,
        "free_gpu_memory_fraction": 0.9 if layout_version == "1.4.0rc1" else None}
    assert ran["cuda_graph_config"] is None and ran["attn_backend"] == "FLASHINFER"
    assert ran["disable_overlap_scheduler"] is True
    assert ran["scheduler_config"]["dynamic_batch_config"] is None  # the file's replaced it


def test_the_servers_own_scheduler_and_cuda_graphs_without_an_options_file(
        trtllm_layout: Install, checkpoint: str, tmp_path: Path) -> None:
    trtllm_layout("1.2.1")
    log = tmp_path / "serve.log"
    process = start_serve([checkpoint, "--port", str(openai_server.free_port()),
                           "--host", "127.0.0.1"], log)  # --backend pytorch is the default
    process.terminate()
    process.wait(timeout=30)

    ran = loaded(log)
    assert ran["backend"] == "pytorch"
    assert (ran["max_batch_size"], ran["max_num_tokens"]) == (2048, 8192)
    assert ran["scheduler_config"]["dynamic_batch_config"]["enable_batch_size_tuning"] is True
    assert ran["cuda_graph_config"]["max_batch_size"] == 128
    assert ran["kv_cache_config"]["free_gpu_memory_fraction"] == 0.9  # the flag's default


@pytest.mark.parametrize(("version", "backend", "status", "message"), [
    ("1.4.0rc1", "tensorrt", 2, "Invalid value for '--backend'"),
    ("1.0.0", "pytorch", 1, "is a TensorRT engine directory"),
])
def test_the_server_refuses_what_the_release_cannot_serve(
        trtllm_layout: Install, checkpoint: str, tmp_path: Path, version: str, backend: str,
        status: int, message: str) -> None:
    trtllm = trtllm_layout(version)
    model = (engine_from(trtllm, checkpoint, tmp_path / "engine")
             if backend == "pytorch" else checkpoint)

    done = subprocess.run([sys.executable, "-m", SERVE, "serve", model, "--backend", backend],
                          capture_output=True, text=True, check=False, timeout=120)

    assert done.returncode == status and message in done.stderr
