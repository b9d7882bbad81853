"""Review of issue 15 (TensorRT-LLM's two runtimes, three release layouts): cases the suite
does not cover. Each was a confirmed defect, fixed since."""

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


@pytest.mark.parametrize("version", ["1.0.0", "1.2.1"])
def test_an_unset_max_seq_len_is_checked_against_the_model_before_an_engine_is_built(
        trtllm_layout: Install, version: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    trtllm_layout(version)
    positions = positions_of(tiny_model_dir)
    backend = backend_of(tiny_model_dir, tmp_path / "engines", input_len=positions - 4,
                         output_len=8, tensorrt={"max_input_len": positions})

    problems = backend.preflight()

    assert any(f"needs {positions + 4}" in p for p in problems), problems


@pytest.mark.parametrize("version", ["1.0.0", "1.2.1"])
def test_no_engine_is_built_for_a_workload_beyond_the_models_positions(
        trtllm_layout: Install, version: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    trtllm_layout(version)
    positions = positions_of(tiny_model_dir)
    backend = backend_of(tiny_model_dir, tmp_path / "engines", input_len=positions - 4,
                         output_len=8, tensorrt={"max_input_len": positions})
    if not backend.preflight():  # before the fix: nothing found, so the run went on
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
