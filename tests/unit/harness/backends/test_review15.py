"""Review of issue 15 (TensorRT-LLM's two runtimes, three release layouts): cases the suite
does not cover. Confirmed defects are strict xfails, so the suite stays green until they are
fixed."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness.backends.base import Request
from harness.backends.tensorrt import TensorRtBackend
from harness.errors import BackendError
from harness.schema.config import ExperimentConfig
from harness.testing import FakeGpu

Install = Callable[[str], ModuleType]


def backend_of(model_dir: Path, cache: Path, **overrides: Any) -> TensorRtBackend:
    values: dict[str, Any] = {"model": str(model_dir), "backend": "tensorrt",
                              "precision": "fp16", "n": 2, "input_len": 8, "output_len": 4,
                              **overrides}
    backend = TensorRtBackend(ExperimentConfig(**values), "cuda:0")
    backend.gpu_info = [FakeGpu([(0.0, 100.0)], info={"compute_capability": "9.0"}).info()]
    backend.engine_cache_root = cache
    return backend


def positions_of(model_dir: Path) -> int:
    return int(json.loads((model_dir / "config.json").read_text())["max_position_embeddings"])


# -- (a)/(d) an engine that cannot serve the workload is built and cached ----------------------


@pytest.mark.xfail(strict=True, reason=(
    "engine runtime: an unset tensorrt.max_seq_len is the model's positions (TensorRT-LLM "
    "infers it at build), but build.workload_problems does not check prompt + output against "
    "it, so preflight passes, the engine is built and cached, and the run fails at the first "
    "generate (the PyTorch runtime's preflight does check the model's limit)"))
@pytest.mark.parametrize("version", ["1.0.0", "1.2.1"])
def test_an_unset_max_seq_len_is_checked_against_the_model_before_an_engine_is_built(
        trtllm_layout: Install, version: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    trtllm_layout(version)
    positions = positions_of(tiny_model_dir)
    backend = backend_of(tiny_model_dir, tmp_path / "engines", input_len=positions - 4,
                         output_len=8, tensorrt={"max_input_len": positions})

    problems = backend.preflight()

    assert any(f"needs {positions + 4}" in p for p in problems), problems


@pytest.mark.xfail(strict=True, reason=(
    "engine runtime, end to end: with max_seq_len unset and prompt + output above the model's "
    "positions, preflight passes, an engine is built and kept in the cache, and the first "
    "generate fails (every rerun then hits that engine and fails the same way)"))
@pytest.mark.parametrize("version", ["1.0.0", "1.2.1"])
def test_no_engine_is_built_for_a_workload_beyond_the_models_positions(
        trtllm_layout: Install, version: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    trtllm_layout(version)
    positions = positions_of(tiny_model_dir)
    backend = backend_of(tiny_model_dir, tmp_path / "engines", input_len=positions - 4,
                         output_len=8, tensorrt={"max_input_len": positions})
    if not backend.preflight():  # today: nothing found, so the run goes on
        backend.load()
        try:
            vocab = backend.vocab_ids()
            prompt = (vocab * (positions // len(vocab) + 1))[: positions - 4]
            with pytest.raises(BackendError, match="max_seq_len"):
                backend.generate([Request(0, prompt, 8)])
        finally:
            backend.unload()

    assert importlib.import_module("tensorrt_llm.llmapi.llm").BUILDS == 0
    cached = tmp_path / "engines"
    assert not cached.exists() or not [p for p in cached.iterdir() if p.name[0] != "."]


# -- (c) the fakes against the published source ----------------------------------------------


def checkpoint_dir(directory: Path) -> str:
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(
        {"architectures": ["LlamaForCausalLM"], "vocab_size": 64, "eos_token_id": 1,
         "max_position_embeddings": 256, "torch_dtype": "float16"}))
    return str(directory)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "fake: 1.1 is modelled as clamping run-time limits above an engine's built ones, but a "
    "published trtllm-serve log of TensorRT-LLM 1.1.0 loading an engine built with "
    "max_batch_size 64 fails with TrtLlmArgs' ValueError 'max_batch_size [2048] is greater "
    "than build_config.max_batch_size [64] in build_config' (validate_build_config_with_"
    "runtime_params still raised in 1.1.0; the clamp is in a later 1.1-era llm_args.py)"))
def test_the_fake_1_1_0_raises_for_run_time_limits_above_the_built_ones(
        trtllm_layout: Install, tmp_path: Path) -> None:
    trtllm_layout("1.1.0")
    checkpoint = checkpoint_dir(tmp_path / "checkpoint")
    engine_llm = importlib.import_module("tensorrt_llm._tensorrt_engine").LLM
    builder = engine_llm(model=checkpoint, tokenizer=checkpoint, max_batch_size=2)
    builder.save(str(tmp_path / "engine"))
    builder.shutdown()

    try:
        loaded = engine_llm(model=str(tmp_path / "engine"), tokenizer=checkpoint,
                            max_batch_size=4)
    except ValueError as error:
        assert "is greater than build_config.max_batch_size" in str(error)
        return
    loaded.shutdown()
    raise AssertionError("1.1.0 clamped instead of raising")


@pytest.mark.xfail(strict=True, reason=(
    "fake: _TrtLLM._check_arguments checks beams against the run-time max_beam_width, but the "
    "library (1.x llm.py) checks sampling_params.best_of against build_config.max_beam_width, "
    "the loaded engine's: a beam request wider than the engine was built for is refused even "
    "when LLM(...) was given a larger run-time max_beam_width"))
def test_the_fake_engine_refuses_beams_wider_than_the_built_engine(
        trtllm_layout: Install, tmp_path: Path) -> None:
    trtllm = trtllm_layout("1.2.1")
    checkpoint = checkpoint_dir(tmp_path / "checkpoint")
    engine_llm = importlib.import_module("tensorrt_llm._tensorrt_engine").LLM
    builder = engine_llm(model=checkpoint, tokenizer=checkpoint)  # built for one beam
    builder.save(str(tmp_path / "engine"))
    builder.shutdown()
    loaded = engine_llm(model=str(tmp_path / "engine"), tokenizer=checkpoint, max_beam_width=2)
    try:
        params = trtllm.SamplingParams(use_beam_search=True, best_of=2, n=1, max_tokens=2,
                                       end_id=1)
        with pytest.raises(ValueError, match="max_beam_width"):
            loaded.generate([5, 6, 7], sampling_params=params)
    finally:
        loaded.shutdown()


@pytest.mark.xfail(strict=True, reason=(
    "fake: before the removal the PyTorch runtime's LLM accepts build_config and ignores it, "
    "but BaseLlmArgs.set_runtime_knobs_from_build_config (1.1-era llm_args.py: 'TODO: remove "
    "this after PyT become default to adapt PyT with build_config as input') sets the PyTorch "
    "backend's max_batch_size, max_num_tokens, max_seq_len, max_input_len and max_beam_width "
    "from the build_config given, over the run-time ones"))
def test_the_fake_pytorch_llm_takes_its_limits_from_a_given_build_config(
        trtllm_layout: Install, tmp_path: Path) -> None:
    trtllm = trtllm_layout("1.2.1")
    checkpoint = checkpoint_dir(tmp_path / "checkpoint")
    llm = trtllm.LLM(model=checkpoint, max_batch_size=4,
                     build_config=trtllm.llmapi.BuildConfig(max_batch_size=8))
    try:
        assert llm.args.max_batch_size == 8
    finally:
        llm.shutdown()
