"""The TensorRT-LLM backend against a fake ``tensorrt_llm`` (tests/fakes/tensorrt_llm) that
mirrors the LLM API surface llem calls, with the real tiny model's tokenizer and checkpoint."""

from __future__ import annotations

import contextlib
import importlib
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
from pydantic import ValidationError

from harness import models
from harness.backends.base import Request
from harness.backends.tensorrt import TensorRtBackend, build
from harness.backends.tensorrt.backend import decoding_kwargs, engine_llm_class
from harness.energy import GpuSet
from harness.engine_cache import EngineCache, cache_key
from harness.errors import BackendError
from harness.protocol import ExperimentRun
from harness.schema.config import ExperimentConfig, LatencyConfig
from harness.schema.result import ExperimentResult
from harness.schema.run_spec import RunSpec
from harness.testing import FakeGpu

FAKES = Path(__file__).resolve().parents[3] / "fakes"
EOS_ID = 1
POWER_W = 150.0


def fake_llm_module() -> ModuleType:
    return importlib.import_module("tensorrt_llm.llmapi.llm")


def make_config(model: Path | str, **overrides: Any) -> ExperimentConfig:
    values: dict[str, Any] = {"model": str(model), "backend": "tensorrt", "precision": "fp16",
                              "n": 4, "input_len": 8, "output_len": 6}
    values.update(overrides)
    return ExperimentConfig(**values)


def gpu_info(compute_capability: str = "9.0") -> list[Any]:
    return [FakeGpu([(0.0, POWER_W)], info={"compute_capability": compute_capability}).info()]


def make_backend(model: Path | str, cache_root: Path, **overrides: Any) -> TensorRtBackend:
    backend = TensorRtBackend(make_config(model, **overrides), "cuda:0")
    backend.gpu_info = gpu_info()
    backend.engine_cache_root = cache_root
    return backend


def requests_of(backend: TensorRtBackend, lengths: list[int]) -> list[Request]:
    vocab = backend.vocab_ids()
    return [Request(i, vocab[i * 5: i * 5 + 8], length) for i, length in enumerate(lengths)]


def test_importing_the_backend_does_not_import_tensorrt_llm() -> None:
    code = (
        "import sys\n"
        "from harness.backends import backend_class\n"
        "backend_class('tensorrt')\n"
        "assert 'tensorrt_llm' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAKES), *sys.path])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)

    assert result.returncode == 0, result.stderr


# -- the cache key: every build field, nothing else ------------------------------------------

BASE = {"model": "org/model", "backend": "tensorrt", "precision": "bf16"}


def key_of(overrides: dict[str, Any], revision: str = "rev1", version: str = "1.0.0",
           capability: str = "9.0") -> str:
    config = ExperimentConfig(**{**BASE, **overrides})
    return cache_key(build.cache_description(config, revision, version, capability))


BUILD_CHANGES = [
    {"model": "org/other"},
    {"precision": "fp16"},
    {"precision": "fp8"},
    {"tensorrt": {"quantization": "int4_awq"}},
    {"tensorrt": {"max_batch_size": 16}},
    {"tensorrt": {"max_input_len": 512}},
    {"tensorrt": {"max_seq_len": 2048}},
    {"tensorrt": {"max_num_tokens": 4096}},
    {"tensorrt": {"tp_size": 2}},
    {"tensorrt": {"pp_size": 2}},
    {"decoder": {"mode": "beam"}},
    {"passthrough_kwargs": {"embedding_parallel_mode": "NONE"}},
    # A run-time setting, but handed to LLM(...) while building, and some TensorRT-LLM versions
    # build paged context FMHA into the engine when block reuse is on.
    {"tensorrt": {"enable_block_reuse": True}},
]


@pytest.mark.parametrize("change", BUILD_CHANGES, ids=lambda c: json.dumps(c))
def test_the_key_changes_with_every_build_field(change: dict[str, Any]) -> None:
    assert key_of(change) != key_of({})


def test_the_key_changes_with_the_beam_width_revision_version_and_gpu() -> None:
    four = {"decoder": {"mode": "beam", "num_beams": 4}}
    assert key_of({"decoder": {"mode": "beam", "num_beams": 2}}) != key_of(four)
    assert key_of({}, revision="rev2") != key_of({})
    assert key_of({}, version="0.21.0") != key_of({})
    assert key_of({}, capability="8.0") != key_of({})


def test_the_key_covers_the_runtime() -> None:
    config = ExperimentConfig(**BASE)
    described = build.cache_description(config, "rev1", "1.0.0", "9.0")

    assert described["runtime"] == "engine"
    assert cache_key({**described, "runtime": "pytorch"}) != cache_key(described)


def test_removing_builder_opt_level_kept_every_engine_key() -> None:
    # Taken before tensorrt.builder_opt_level was removed: engines built then are still hits.
    assert key_of({}, version="1.2.1") == (
        "e671a9d1d3fd0a75fcbb6af4e8bd5b9ff2061fba8f8d34ea51137329eee49ec2")


RUNTIME_CHANGES = [
    {"tensorrt": {"kv_cache_free_gpu_memory_fraction": 0.5}},
    {"decoder": {"mode": "sampling", "temperature": 0.7, "top_p": 0.9, "top_k": 20}},
    {"n": 7},
    {"input_len": 300},
    {"output_len": 300},
    {"random_seed": 1},
    {"dataset": "llem-prompts-v1"},
    {"warmup": {"n_warmup": 9, "min_seconds": 0}},
    {"baseline": {"enabled": False}},
    {"energy": {"backend": "none"}},
    {"latency": {"streaming": True}},
    {"load": {"mode": "serving", "request_rate": 5.0}},
    {"tensorrt": {"tp_size": 1, "pp_size": 1}},  # the default, spelled out
    {"tensorrt": {"enable_block_reuse": False}},  # llem's default, spelled out
]


@pytest.mark.parametrize("change", RUNTIME_CHANGES, ids=lambda c: json.dumps(c))
def test_the_key_ignores_run_time_fields(change: dict[str, Any]) -> None:
    assert key_of(change) == key_of({})


def test_the_description_names_model_runtime_version_and_capability_for_cache_list() -> None:
    config = ExperimentConfig(**{**BASE, "tensorrt": {"max_batch_size": 8}})
    described = build.cache_description(config, "rev1", "1.0.0", "9.0")

    assert described["model"] == "org/model" and described["model_revision"] == "rev1"
    assert described["runtime"] == "engine"
    assert described["tensorrt_llm_version"] == "1.0.0"
    assert described["compute_capability"] == "9.0"
    assert described["max_batch_size"] == 8 and described["max_seq_len"] is None
    assert "kv_cache_free_gpu_memory_fraction" not in json.dumps(described)


# -- build arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "dtype", "algo"), [
    ({"precision": "fp32"}, "float32", None),
    ({"precision": "fp16"}, "float16", None),
    ({"precision": "bf16"}, "bfloat16", None),
    ({"precision": "fp8"}, "auto", "FP8"),
    ({"precision": "int8"}, "auto", "W8A16"),
    ({"precision": "int4"}, "auto", "W4A16"),
    ({"tensorrt": {"quantization": "fp8"}}, "bfloat16", "FP8"),
    ({"tensorrt": {"quantization": "int8_sq"}}, "bfloat16", "W8A8_SQ_PER_CHANNEL"),
    ({"tensorrt": {"quantization": "int8_weight_only"}}, "bfloat16", "W8A16"),
    ({"tensorrt": {"quantization": "int4_weight_only"}}, "bfloat16", "W4A16"),
    ({"tensorrt": {"quantization": "int4_awq"}}, "bfloat16", "W4A16_AWQ"),
])
def test_precision_and_quantisation_reach_the_builder(
        trtllm: ModuleType, overrides: dict[str, Any], dtype: str, algo: str | None) -> None:
    settings = build.build_settings(ExperimentConfig(**{**BASE, **overrides}))

    assert settings["dtype"] == dtype
    if algo is None:
        assert "quant_config" not in settings
    else:
        assert settings["quant_config"].quant_algo is trtllm.llmapi.QuantAlgo[algo]


def test_unset_build_fields_keep_the_library_defaults(trtllm: ModuleType) -> None:
    settings = build.build_settings(ExperimentConfig(**BASE))
    defaults = trtllm.llmapi.BuildConfig()

    assert settings["build_config"] == defaults
    assert "max_batch_size" not in settings
    # The KV-cache memory is the library's default; block reuse is off (llem's default).
    assert settings["kv_cache_config"] == trtllm.llmapi.KvCacheConfig(enable_block_reuse=False)
    assert settings["tensor_parallel_size"] == settings["pipeline_parallel_size"] == 1


def test_set_build_fields_reach_build_config_and_run_time_limits(trtllm: ModuleType) -> None:
    config = ExperimentConfig(**BASE, decoder={"mode": "beam", "num_beams": 3}, tensorrt={
        "max_batch_size": 16, "max_input_len": 64, "max_seq_len": 128, "max_num_tokens": 512,
        "tp_size": 2, "pp_size": 2, "kv_cache_free_gpu_memory_fraction": 0.4})
    settings = build.build_settings(config)
    built = settings["build_config"]

    assert (built.max_batch_size, built.max_input_len, built.max_seq_len,
            built.max_num_tokens, built.max_beam_width) == (16, 64, 128, 512, 3)
    assert settings["tensor_parallel_size"] == settings["pipeline_parallel_size"] == 2
    assert (settings["max_batch_size"], settings["max_num_tokens"],
            settings["max_beam_width"]) == (16, 512, 3)
    assert settings["kv_cache_config"].free_gpu_memory_fraction == 0.4


# -- the LLM class ---------------------------------------------------------------------------


def test_the_engine_llm_is_the_tensorrt_engine_path_not_the_pytorch_default(
        trtllm: ModuleType) -> None:
    assert engine_llm_class() is importlib.import_module("tensorrt_llm._tensorrt_engine").LLM
    assert engine_llm_class() is not trtllm.LLM


def test_a_0x_release_uses_its_top_level_llm_as_the_engine_path(
        trtllm_layout: Callable[[str], ModuleType]) -> None:
    trtllm = trtllm_layout("0.21.0")

    assert engine_llm_class() is trtllm.LLM
    assert engine_llm_class().__name__ == "_TrtLLM"


def test_a_release_without_the_engine_runtime_is_refused_never_run_on_pytorch(
        trtllm_layout: Callable[[str], ModuleType], tiny_model_dir: Path,
        tmp_path: Path) -> None:
    # After the removal the top-level LLM is the PyTorch runtime: taking it for the engine
    # path would measure another runtime under the engine's name.
    trtllm_layout("1.3.0rc1")
    backend = make_backend(tiny_model_dir, tmp_path / "engines",
                           tensorrt={"max_batch_size": 8})
    problems = backend.preflight()
    (runtime,) = [p for p in problems if "no TensorRT-engine runtime" in p]
    assert "tensorrt_llm 1.3.0rc1" in runtime and "1.2.1" in runtime
    assert len(problems) == 1, problems
    with pytest.raises(BackendError, match="no TensorRT-engine runtime") as raised:
        backend.load()
    fix = raised.value.fix or ""
    assert "1.2.1" in fix and "runtime: pytorch" in fix  # an image pin, or the other runtime
    assert fake_llm_module().INSTANCES == []  # nothing constructed, no PyTorch LLM


# -- preflight -------------------------------------------------------------------------------


def test_preflight_lists_every_problem_at_once(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt_llm", None)  # not installed
    backend = TensorRtBackend(make_config(tmp_path / "absent"), "cpu")

    problems = backend.preflight()

    assert len(problems) == 3
    assert "needs tensorrt_llm, which is not installed" in problems[0]
    assert "llem images build tensorrt" in problems[0]
    assert "does not exist" in problems[1]
    assert "NVIDIA GPUs only, not on device 'cpu'" in problems[2]


def test_preflight_checks_gpus_and_limits(trtllm: ModuleType, tiny_model_dir: Path) -> None:
    config = make_config(tiny_model_dir, input_len=100, output_len=50, tensorrt={
        "tp_size": 2, "max_seq_len": 120})
    backend = TensorRtBackend(config, "cuda:0")
    backend.gpu_info = gpu_info()

    problems = "\n".join(backend.preflight())

    assert "needs 2 GPUs, but the run has 1" in problems
    assert "tensorrt.max_seq_len is 120, but the workload needs 150" in problems


@pytest.mark.parametrize(("overrides", "needed"), [
    ({"input_len": 2000, "output_len": 8}, 2000),
    # drawn lengths: the longest draw is round(900 x 1.2) = 1080
    ({"input_len": 900, "output_len": 8,
      "load": {"lengths": "uniform", "length_range_ratio": 0.2}}, 1080),
])
def test_an_unset_max_input_len_is_checked_against_the_default_before_a_build(
        trtllm: ModuleType, tiny_model_dir: Path, overrides: dict[str, Any],
        needed: int) -> None:
    # TensorRT-LLM builds for 1024 prompt tokens when max_input_len is unset; an engine built
    # so would be cached and reject every longer prompt at generate
    backend = make_backend(tiny_model_dir, Path("unused"), **overrides)

    problems = "\n".join(backend.preflight())

    assert "tensorrt.max_input_len is unset" in problems
    assert f"prompts of {needed}" in problems and f"at least {needed}" in problems
    fits = make_backend(tiny_model_dir, Path("unused"),
                        **{**overrides, "tensorrt": {"max_input_len": needed}})
    assert not any("max_input_len" in p for p in fits.preflight())


def test_a_healthy_configuration_passes_preflight(trtllm: ModuleType,
                                                  tiny_model_dir: Path) -> None:
    backend = make_backend(tiny_model_dir, Path("unused"))

    assert backend.preflight() == []


def test_preflight_checks_a_given_engine_dir(trtllm: ModuleType, tiny_model_dir: Path,
                                             tmp_path: Path) -> None:
    missing = TensorRtBackend(make_config(tiny_model_dir, tensorrt={"engine_dir": str(tmp_path)}),
                              "cuda:0")
    assert "has no config.json" in "\n".join(missing.preflight())

    engine = tmp_path / "engine"
    engine_llm_class()(model=str(tiny_model_dir), tokenizer=str(tiny_model_dir)).save(str(engine))
    beam = make_config(tiny_model_dir, decoder={"mode": "beam", "num_beams": 2},
                       tensorrt={"engine_dir": str(engine)})
    problems = "\n".join(TensorRtBackend(beam, "cuda:0").preflight())

    assert "built with max_beam_width 1, but this experiment needs 2" in problems


def test_passthrough_may_not_replace_the_kv_cache_settings_llem_sets(
        trtllm: ModuleType, tiny_model_dir: Path, tmp_path: Path) -> None:
    backend = make_backend(tiny_model_dir, tmp_path, passthrough_kwargs={
        "kv_cache_config": {"enable_block_reuse": True}, "max_batch_size": 8, "fast_build": True})

    [found] = backend.preflight()
    assert "passthrough_kwargs kv_cache_config, max_batch_size would be replaced" in found
    assert "tensorrt.enable_block_reuse" in found
    with pytest.raises(BackendError, match="kv_cache_config, max_batch_size"):
        backend.load()
    assert fake_llm_module().INSTANCES == []


# -- loading and the engine cache -------------------------------------------------------------


def test_a_miss_builds_once_and_keeps_the_llm_it_built(trtllm: ModuleType, tiny_model_dir: Path,
                                                       tmp_path: Path) -> None:
    backend = make_backend(tiny_model_dir, tmp_path / "cache", tensorrt={"max_batch_size": 4})
    backend.load()
    record = backend.engine_cache()
    fake = fake_llm_module()

    assert record is not None and record.source == "cache" and record.hit is False
    assert record.build_s is not None and record.build_s > 0
    assert (fake.BUILDS, fake.LOADS, len(fake.INSTANCES)) == (1, 0, 1)
    engine = Path(record.engine_dir)
    assert engine.parent == tmp_path / "cache" / record.key
    assert (engine / "rank0.engine").is_file()
    assert json.loads((engine / "config.json").read_text())["build_config"]["max_batch_size"] == 4
    assert record.description is not None and record.description["compute_capability"] == "9.0"
    backend.unload()
    assert fake.INSTANCES[0].is_shut_down


def test_a_hit_loads_the_cached_engine_without_building(trtllm: ModuleType,
                                                        tiny_model_dir: Path,
                                                        tmp_path: Path) -> None:
    first = make_backend(tiny_model_dir, tmp_path, tensorrt={"kv_cache_free_gpu_memory_fraction":
                                                             0.5})
    first.load()
    first.unload()
    second = make_backend(tiny_model_dir, tmp_path, tensorrt={"kv_cache_free_gpu_memory_fraction":
                                                              0.3})
    second.load()
    fake = fake_llm_module()
    record = second.engine_cache()

    assert record is not None and record.hit is True and record.build_s is None
    assert (fake.BUILDS, fake.LOADS) == (1, 1)
    assert record.key == first.engine_cache().key
    assert fake.INSTANCES[1].args.model == record.engine_dir
    assert second.effective_parameters()["kv_cache_config"]["free_gpu_memory_fraction"] == 0.3
    assert fake.INSTANCES[1].args.kv_cache_config.enable_block_reuse is False


@pytest.mark.parametrize(("section", "enabled", "source"), [
    ({}, False, "llem default: off in measurement runs (tensorrt.enable_block_reuse unset)"),
    ({"enable_block_reuse": False}, False, "study: tensorrt.enable_block_reuse"),
    ({"enable_block_reuse": True}, True, "study: tensorrt.enable_block_reuse"),
])
def test_block_reuse_is_off_unless_the_study_turns_it_on(
        trtllm: ModuleType, tiny_model_dir: Path, tmp_path: Path, section: dict[str, Any],
        enabled: bool, source: str) -> None:
    built = make_backend(tiny_model_dir, tmp_path, tensorrt=section)
    built.load()  # a miss: the LLM that builds the engine also serves it
    loaded = make_backend(tiny_model_dir, tmp_path, tensorrt=section)
    loaded.load()  # a hit: the engine is loaded from the cache
    fake = fake_llm_module()

    assert (fake.BUILDS, fake.LOADS) == (1, 1)
    for backend, llm in ((built, fake.INSTANCES[0]), (loaded, fake.INSTANCES[1])):
        assert llm.args.kv_cache_config.enable_block_reuse is enabled
        params = backend.effective_parameters()
        assert params["kv_cache_config"]["enable_block_reuse"] is enabled
        assert params["cross_request_cache"] == {
            "setting": "kv_cache_config.enable_block_reuse", "enabled": enabled,
            "source": source}
    engine = built.engine_cache()
    assert engine is not None and engine.description is not None
    assert engine.description["enable_block_reuse"] is enabled


def test_another_gpu_generation_or_library_version_builds_again(
        trtllm: ModuleType, tiny_model_dir: Path, tmp_path: Path) -> None:
    make_backend(tiny_model_dir, tmp_path).load()
    other_gpu = make_backend(tiny_model_dir, tmp_path)
    other_gpu.gpu_info = gpu_info("8.0")
    other_gpu.load()
    trtllm.__version__ = "0.21.0"
    make_backend(tiny_model_dir, tmp_path).load()

    assert fake_llm_module().BUILDS == 3
    assert len([e for e in EngineCache(tmp_path).entries() if e.state == "complete"]) == 3


def test_the_engine_is_keyed_by_the_model_digest_the_host_pinned(
        trtllm: ModuleType, tiny_model_dir: Path, tmp_path: Path) -> None:
    digest = "local-files-sha256:" + "1" * 64
    pinned = make_backend(tiny_model_dir, tmp_path, model_digest=digest)
    pinned.load()
    unpinned = make_backend(tiny_model_dir, tmp_path)
    unpinned.load()

    described = [backend.engine_cache().description for backend in (pinned, unpinned)]
    assert described[0] is not None and described[0]["model_revision"] == digest
    assert described[1] is not None and described[1]["model_revision"] == (
        models.resolved_revision(tiny_model_dir))


def test_a_failed_build_is_a_backend_error_and_leaves_no_entry(trtllm: ModuleType,
                                                               tiny_model_dir: Path,
                                                               tmp_path: Path) -> None:
    backend = make_backend(tiny_model_dir, tmp_path, passthrough_kwargs={"not_an_arg": 1})

    with pytest.raises(BackendError, match="failed to build the engine.*not_an_arg"):
        backend.load()
    assert [e for e in EngineCache(tmp_path).entries() if e.state == "complete"] == []


def test_an_unusable_cache_directory_is_a_backend_error(trtllm: ModuleType,
                                                       tiny_model_dir: Path,
                                                       tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    backend = make_backend(tiny_model_dir, not_a_directory)

    with pytest.raises(BackendError, match="the engine cache in .*file failed"):
        backend.load()


def test_a_given_engine_dir_is_used_as_is(trtllm: ModuleType, tiny_model_dir: Path,
                                          tmp_path: Path) -> None:
    engine = tmp_path / "prebuilt"
    builder = engine_llm_class()(model=str(tiny_model_dir), tokenizer=str(tiny_model_dir),
                                 build_config=trtllm.llmapi.BuildConfig(max_batch_size=8))
    builder.save(str(engine))
    backend = make_backend(tiny_model_dir, tmp_path / "cache",
                           tensorrt={"engine_dir": str(engine)})
    backend.load()
    record = backend.engine_cache()

    assert record is not None and record.source == "engine_dir" and record.hit is None
    assert record.engine_dir == str(engine) and record.key is None
    assert fake_llm_module().LOADS == 1 and not (tmp_path / "cache").exists()
    assert backend.effective_parameters()["build_config"]["max_batch_size"] == 8
    assert fake_llm_module().INSTANCES[1].args.kv_cache_config.enable_block_reuse is False


# -- generation ------------------------------------------------------------------------------


@pytest.fixture
def loaded(trtllm: ModuleType, tiny_model_dir: Path, tmp_path: Path) -> Iterator[TensorRtBackend]:
    backend = make_backend(tiny_model_dir, tmp_path)
    backend.load()
    yield backend
    backend.unload()


def test_every_request_gets_exactly_its_length_through_eos(loaded: TensorRtBackend) -> None:
    requests = requests_of(loaded, [6, 3, 9])
    output = loaded.generate(requests)

    assert [o.output_tokens for o in output.outputs] == [6, 3, 9]
    assert [len(o.output_ids or []) for o in output.outputs] == [6, 3, 9]
    assert all((o.output_ids or [])[2] == EOS_ID for o in output.outputs)  # EOS was ignored
    assert {o.start_s for o in output.outputs} == {output.outputs[0].start_s}
    assert output.phase_marks == [] and output.phases_separated is False


def test_a_short_result_breaks_the_fixed_length_contract(trtllm: ModuleType,
                                                         tiny_model_dir: Path,
                                                         tmp_path: Path) -> None:
    class StopsAtEos(TensorRtBackend):
        def sampling_kwargs(self, max_new_tokens: int) -> dict[str, Any]:
            kwargs = super().sampling_kwargs(max_new_tokens)
            return {**kwargs, "ignore_eos": False, "min_tokens": None}

    backend = StopsAtEos(make_config(tiny_model_dir), "cuda:0")
    backend.engine_cache_root = tmp_path
    backend.load()

    with pytest.raises(BackendError, match="produced 2 tokens .* exactly 6"):
        backend.generate(requests_of(backend, [6]))


def test_streaming_stamps_every_token_and_splits_approximately(loaded: TensorRtBackend) -> None:
    loaded.config = loaded.config.model_copy(update={"latency": LatencyConfig(streaming=True)})
    calls: list[tuple[int, int]] = []
    output = loaded.generate(requests_of(loaded, [5, 5, 7]), on_batch=lambda *a: calls.append(a))

    assert calls == [(3, 3)]
    for item in output.outputs:
        assert item.token_times_s is not None and len(item.token_times_s) == item.output_tokens
        assert item.first_token_s == item.token_times_s[0] and item.end_s == item.token_times_s[-1]
        assert item.token_times_s == sorted(item.token_times_s)
    [mark] = output.phase_marks
    assert mark.prefill_end_s == max(o.first_token_s or 0.0 for o in output.outputs)
    assert mark.start_s < mark.prefill_end_s < mark.end_s
    assert output.phases_separated is False  # an instant, not a boundary between phases


def test_generation_errors_are_backend_errors(loaded: TensorRtBackend) -> None:
    too_long = [Request(0, [5] * 2000, 4)]  # beyond the engine's max_input_len (1024)

    with pytest.raises(BackendError, match="max_input_len"):
        loaded.generate(too_long)


@pytest.mark.parametrize(("decoder", "expected"), [
    ({"mode": "greedy"}, {"top_k": 1}),
    ({"mode": "sampling"}, {"temperature": 1.0, "top_p": 1.0, "top_k": 0}),
    ({"mode": "sampling", "temperature": 0.5, "top_k": 5}, {"temperature": 0.5, "top_p": 1.0,
                                                           "top_k": 5}),
    ({"mode": "beam"}, {"use_beam_search": True, "n": 1, "best_of": 4}),
    ({"mode": "beam", "num_beams": 2}, {"use_beam_search": True, "n": 1, "best_of": 2}),
])
def test_decoder_modes_become_sampling_params(decoder: dict[str, Any],
                                              expected: dict[str, Any]) -> None:
    assert decoding_kwargs(make_config("org/model", decoder=decoder).decoder) == expected


def test_sampling_params_the_engine_accepts_are_greedy_only_for_greedy(
        trtllm: ModuleType) -> None:
    for mode, greedy in (("greedy", True), ("sampling", False)):
        kwargs = decoding_kwargs(make_config("org/model", decoder={"mode": mode}).decoder)
        assert trtllm.SamplingParams(**kwargs)._greedy_decoding is greedy


# -- whole runs through the harness ----------------------------------------------------------


def run_spec(model_dir: Path, cache_dir: Path | None, **overrides: Any) -> RunSpec:
    config = {"model": str(model_dir), "backend": "tensorrt", "precision": "fp16", "n": 6,
              "input_len": 16, "output_len": 12, "warmup": {"n_warmup": 1, "min_seconds": 0},
              "baseline": {"enabled": False},
              "energy": {"sample_interval_ms": 20, "prefill_pass_min_s": 0.2},
              "tensorrt": {"max_batch_size": 4}, **overrides}
    return RunSpec(run_id="r1", config=ExperimentConfig(**config),
                   engine_cache_dir=str(cache_dir) if cache_dir else None)


def fake_gpus(compute_capability: str = "9.0") -> GpuSet:
    gpu = FakeGpu([(0.0, POWER_W), (1e6, POWER_W)], temperature_c=[(0.0, 40.0), (1e6, 40.0)],
                  info={"compute_capability": compute_capability})
    return GpuSet([gpu], driver_version="999.1", cuda_version="12.9")


def execute(spec: RunSpec, run_dir: Path) -> ExperimentResult:
    return ExperimentRun(spec, run_dir, gpus=fake_gpus(), device="cuda:0").execute()


def test_two_runs_build_once_then_hit(trtllm: ModuleType, tiny_model_dir: Path,
                                      tmp_path: Path) -> None:
    spec = run_spec(tiny_model_dir, tmp_path / "engines")
    first = execute(spec, tmp_path / "a")
    second = execute(spec, tmp_path / "b")
    fake = fake_llm_module()

    assert first.engine_cache is not None and first.engine_cache.hit is False
    assert first.engine_cache.build_s is not None and first.engine_cache.build_s > 0
    assert second.engine_cache is not None and second.engine_cache.hit is True
    assert second.engine_cache.build_s is None
    assert second.engine_cache.key == first.engine_cache.key
    assert (fake.BUILDS, fake.LOADS) == (1, 1)
    assert all(llm.is_shut_down for llm in fake.INSTANCES)
    for result, run_dir in ((first, tmp_path / "a"), (second, tmp_path / "b")):
        saved = ExperimentResult.model_validate_json((run_dir / "result.json").read_text())
        assert saved == result
        assert result.throughput.output_tokens == 6 * 12
        assert result.environment.backend_versions == {"tensorrt_llm": trtllm.__version__}
        assert result.energy.energy_j is not None and result.energy.energy_j > 0
        params = result.effective_parameters
        assert params["build_config"]["max_batch_size"] == 4
        assert params["build_config"]["max_seq_len"] == 4096  # the model's, resolved at build
        assert params["batching"] == "inflight" and params["ignore_eos"] is True
        assert params["runtime"] == "engine"
        assert params["runtime_llm_class"] == "tensorrt_llm._tensorrt_engine.LLM"
        assert params["min_tokens"] == params["max_tokens"] == 12
        # TensorRT-LLM's outputs do not say how many prompt tokens reused KV blocks: unknown.
        assert result.throughput.cached_prompt_tokens is None
        assert "cross_request_cache_hits" not in result.warning_codes()
    assert first.effective_parameters["engine_source"] == "cache"


def test_the_default_cache_root_comes_from_the_environment(
        trtllm: ModuleType, tiny_model_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLEM_ENGINE_CACHE", str(tmp_path / "env-engines"))
    result = execute(run_spec(tiny_model_dir, None), tmp_path / "run")

    assert result.engine_cache is not None
    assert Path(result.engine_cache.engine_dir).is_relative_to(tmp_path / "env-engines")


def test_a_run_with_engine_dir_uses_it(trtllm: ModuleType, tiny_model_dir: Path,
                                       tmp_path: Path) -> None:
    engine = tmp_path / "prebuilt"
    engine_llm_class()(model=str(tiny_model_dir), tokenizer=str(tiny_model_dir)).save(str(engine))
    spec = run_spec(tiny_model_dir, tmp_path / "engines",
                    tensorrt={"engine_dir": str(engine)})
    result = execute(spec, tmp_path / "run")

    assert result.engine_cache is not None and result.engine_cache.source == "engine_dir"
    assert result.engine_cache.engine_dir == str(engine)
    assert fake_llm_module().BUILDS == 1  # the prebuilt one only
    assert result.effective_parameters["engine_source"] == "engine_dir"
    assert result.throughput.output_tokens == 6 * 12


def test_a_streaming_run_reports_ttft_itl_and_a_measured_split(
        trtllm: ModuleType, tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = run_spec(tiny_model_dir, tmp_path / "engines", latency={"streaming": True})
    result = execute(spec, tmp_path / "run")
    latency = result.latency
    energy = result.energy

    assert latency.ttft is not None and latency.ttft.count == 6
    assert latency.itl is not None and latency.itl.count == 6 * (12 - 1)
    assert latency.e2e is not None and latency.ttft.p50_s < latency.e2e.p50_s
    # continuous batching interleaves the phases: only the measured prefill pass splits them;
    # the fake's decode steps take DECODE_STEP_S each, so decode is there however busy the host
    assert energy.phase_split_method == "prefill_pass"
    assert energy.phase_split_null_reason is None
    assert energy.prefill is not None and energy.decode is not None
    assert energy.prefill.energy_j is not None and energy.decode.energy_j is not None
    assert energy.decode.energy_j > 0 and energy.decode.duration_s > 0
    assert energy.prefill.energy_j + energy.decode.energy_j == pytest.approx(energy.energy_j)
    assert energy.prefill_pass is not None and energy.prefill_pass.repeats >= 1


def test_a_serving_run_streams_each_request_from_its_arrival(
        trtllm: ModuleType, tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = run_spec(tiny_model_dir, tmp_path / "engines", n=12,
                    load={"mode": "serving", "arrival": "constant", "request_rate": 50.0,
                          "ramp_up_s": 0.02})
    result = execute(spec, tmp_path / "run")

    serving = result.serving
    assert serving is not None and serving.client == "in_process"
    assert serving.requests_total == 12 and serving.requests_failed == 0
    # arrivals every 20 ms; the window [20 ms, 220 ms) holds arrivals 1 to 10
    assert serving.requests_in_window == 10
    assert serving.ttft is not None and serving.ttft.count == 10  # all completed (some in drain)
    assert result.latency.reference_point == "arrival"
    assert result.throughput.output_tokens == serving.output_tokens_in_window > 0
    assert result.energy.phase_split_null_reason is not None


@pytest.mark.parametrize("decoder", [{"mode": "sampling", "temperature": 0.8},
                                     {"mode": "beam", "num_beams": 2}])
def test_sampling_and_beam_runs_keep_the_fixed_length(trtllm: ModuleType, tiny_model_dir: Path,
                                                      tmp_path: Path,
                                                      decoder: dict[str, Any]) -> None:
    spec = run_spec(tiny_model_dir, tmp_path / "engines", decoder=decoder)
    built = execute(spec, tmp_path / "built")
    loaded = execute(spec, tmp_path / "loaded")  # the executor must reserve the beams again

    assert loaded.engine_cache is not None and loaded.engine_cache.hit is True
    for result in (built, loaded):
        assert result.throughput.output_tokens == 6 * 12
        assert result.effective_parameters["build_config"]["max_beam_width"] == decoder.get(
            "num_beams", 1)


def test_a_cpu_run_fails_preflight(trtllm: ModuleType, tiny_model_dir: Path,
                                   tmp_path: Path) -> None:
    from harness.errors import PreflightError

    spec = run_spec(tiny_model_dir, tmp_path / "engines")
    with pytest.raises(PreflightError, match="NVIDIA GPUs only"):
        ExperimentRun(spec, tmp_path / "run", gpus=GpuSet(), device="cpu").execute()


def test_lora_is_rejected_with_merge_instructions() -> None:
    with pytest.raises(ValidationError, match=r"lora is not supported by tensorrt.*"
                       r"merge_and_unload\(\)\.save_pretrained\(DIR\)"):
        make_config("org/model", lora={"adapter": "org/adapter"})


# -- the fake mirrors the documented (and, where installed, the real) signatures ---------------


def _documented_signature(documented: ModuleType, name: str) -> inspect.Signature:
    owner, _, method = name.partition(".")
    target = getattr(documented, owner)
    return inspect.signature(getattr(target, method) if method else target)


def _library_objects(library: ModuleType) -> dict[str, Any]:
    """The library's objects under the documented stubs' names, those its release has."""
    llmapi = importlib.import_module(f"{library.__name__}.llmapi")
    objects = {"KvCacheConfig": llmapi.KvCacheConfig, "QuantConfig": llmapi.QuantConfig,
               "SamplingParams": library.SamplingParams}
    with contextlib.suppress(BackendError):  # no TensorRT-engine runtime after its removal
        objects.update(LLM=engine_llm_class(), BuildConfig=llmapi.BuildConfig)
    if library.LLM is not objects.get("LLM"):  # the PyTorch runtime (from 1.0)
        objects.update(TorchLLM=library.LLM, CudaGraphConfig=llmapi.CudaGraphConfig)
    return objects


def _assert_matches_documented(documented: ModuleType, library: ModuleType,
                               check_all_defaults: bool) -> set[str]:
    """Compare what the library has with the stubs; return the stubs it has no object for."""
    objects = _library_objects(library)
    for name, relied in documented.RELIED.items():
        owner, _, method = name.partition(".")
        if owner not in objects:
            continue
        target = getattr(objects[owner], method) if method else objects[owner]
        actual = inspect.signature(target).parameters
        stub = _documented_signature(documented, name).parameters
        for parameter in relied:
            assert parameter in actual, f"{name} has no parameter {parameter}"
            assert actual[parameter].kind == stub[parameter].kind, (name, parameter)
            varies = (owner, parameter) in documented.VERSION_DEPENDENT_DEFAULTS
            if check_all_defaults or not varies:
                assert actual[parameter].default == stub[parameter].default, (name, parameter)
    quant_algo = importlib.import_module(f"{library.__name__}.llmapi").QuantAlgo
    assert all(hasattr(quant_algo, member) for member in documented.QUANT_ALGO_MEMBERS)
    return {name.partition(".")[0] for name in documented.RELIED} - set(objects)


@pytest.mark.parametrize(("version", "missing"), [
    ("1.0.0", set()), ("1.2.1", set()), ("1.4.0rc1", {"LLM", "BuildConfig"}),
    ("0.21.0", {"TorchLLM", "CudaGraphConfig"})])
def test_the_fake_matches_the_documented_signatures(
        documented: ModuleType, trtllm_layout: Callable[[str], ModuleType], version: str,
        missing: set[str]) -> None:
    library = trtllm_layout(version)
    # the stubs copy 1.0's defaults; the others differ in the version-dependent ones only
    assert _assert_matches_documented(documented, library,
                                      check_all_defaults=version == "1.0.0") == missing


def test_every_keyword_llem_passes_is_accepted_by_the_fake(documented: ModuleType,
                                                           trtllm: ModuleType,
                                                           tiny_model_dir: Path) -> None:
    config = make_config(tiny_model_dir, decoder={"mode": "beam", "num_beams": 2}, tensorrt={
        "max_batch_size": 4, "max_num_tokens": 256, "tp_size": 1, "pp_size": 1,
        "quantization": "int8_weight_only", "kv_cache_free_gpu_memory_fraction": 0.5})
    settings = build.build_settings(config)
    llm_keywords = set(settings) - set(inspect.signature(documented.LLM.__init__).parameters)

    assert llm_keywords <= set(documented.TRT_LLM_ARGS_PASSED)
    llm = engine_llm_class()(model=str(tiny_model_dir), tokenizer=str(tiny_model_dir),
                             **settings)
    backend = TensorRtBackend(config, "cuda:0")
    sampling = set(backend.sampling_kwargs(3))
    assert sampling <= set(inspect.signature(documented.SamplingParams).parameters)
    assert sampling <= set(inspect.signature(trtllm.SamplingParams).parameters)
    llm.shutdown()


def _checkpoint(directory: Path) -> Path:
    """A Hugging Face checkpoint directory as far as the fake reads one (its config.json)."""
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(
        {"vocab_size": 64, "eos_token_id": EOS_ID, "max_position_embeddings": 256}))
    return directory


@pytest.mark.parametrize("version", ["1.0.0", "1.2.1", "1.4.0rc1"])
def test_the_pytorch_runtime_keywords_llem_passes_are_accepted_and_read_back(
        documented: ModuleType, trtllm_layout: Callable[[str], ModuleType], tmp_path: Path,
        version: str) -> None:
    trtllm = trtllm_layout(version)
    llmapi = trtllm.llmapi
    passed = {"pipeline_parallel_size": 1, "max_batch_size": 8, "max_num_tokens": 512,
              "max_seq_len": 96, "max_beam_width": 1,
              "kv_cache_config": llmapi.KvCacheConfig(enable_block_reuse=False,
                                                      free_gpu_memory_fraction=0.5),
              "cuda_graph_config": llmapi.CudaGraphConfig(batch_sizes=[4, 1, 2]),
              "attn_backend": "FLASHINFER", "disable_overlap_scheduler": True}
    checkpoint = str(_checkpoint(tmp_path / "checkpoint"))
    fake = importlib.import_module("tensorrt_llm.llmapi.llm")

    assert set(passed) == set(documented.TORCH_LLM_ARGS_PASSED)
    assert set(passed) <= fake.TORCH_LLM_ARGS
    llm = trtllm.LLM(model=checkpoint, tokenizer=checkpoint, tensor_parallel_size=1,
                     dtype="float16", **passed)
    for name, value in passed.items():
        assert getattr(llm.args, name) == value, name
    assert llm.args.cuda_graph_config.max_batch_size == 4
    default = trtllm.LLM(model=checkpoint)
    for name, value in documented.TORCH_LLM_ARGS_DEFAULTS.items():
        assert getattr(default.args, name) == value, name
    assert default.args.cuda_graph_config == llmapi.CudaGraphConfig()
    llm.shutdown()
    default.shutdown()


def test_the_real_library_matches_the_documented_signatures(
        documented: ModuleType, forget: Callable[[], None]) -> None:
    forget()
    library = pytest.importorskip("tensorrt_llm")
    if Path(library.__file__ or "").is_relative_to(FAKES):
        pytest.skip("only the fake tensorrt_llm is importable")
    _assert_matches_documented(documented, library, check_all_defaults=False)
    config = ExperimentConfig(**BASE, decoder={"mode": "beam", "num_beams": 2}, tensorrt={
        "max_batch_size": 4, "max_num_tokens": 256, "quantization": "fp8",
        "kv_cache_free_gpu_memory_fraction": 0.5})
    settings = build.build_settings(config)  # constructs BuildConfig, QuantConfig, KvCacheConfig
    assert set(settings) - {"tensor_parallel_size", "dtype"} <= set(documented.TRT_LLM_ARGS_PASSED)
    library.SamplingParams(**{**decoding_kwargs(config.decoder), "max_tokens": 3,
                              "min_tokens": 3, "ignore_eos": True, "end_id": 2, "pad_id": 2,
                              "seed": 1, "detokenize": False})
