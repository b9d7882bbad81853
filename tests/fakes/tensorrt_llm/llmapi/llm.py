"""The LLM API's ``LLM`` (tensorrt_llm/llmapi/llm.py), TensorRT-engine path, without a GPU.

"Building" writes an engine directory like the real builder's (config.json with ``version``,
``pretrained_config`` and ``build_config``, one ``rank<N>.engine`` per rank) and ``save`` copies
it, exactly as ``LLM.save`` does. ``LLM(model=<dir with config.json holding build_config>)``
loads such an engine without building.

Generation is deterministic: token ``i`` of a request is EOS for every ``i % 4 == 2`` and an
ordinary id derived from the prompt otherwise, so a request stops early at EOS unless
``ignore_eos`` is set or ``min_tokens`` masks it. The argument checks mirror the library's:
unknown keyword arguments, run-time limits above the built ones, prompts longer than
``max_input_len``, prompt + ``max_tokens`` beyond ``max_seq_len``, beams beyond
``max_beam_width``.

Module-level counters let tests assert what happened: ``BUILDS`` (engines built), ``LOADS``
(engines loaded from a directory) and ``INSTANCES`` (every LLM created, to check shutdown).
"""

import asyncio
import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import tensorrt_llm
from tensorrt_llm.builder import BuildConfig
from tensorrt_llm.llmapi.llm_args import TRT_LLM_ARGS, KvCacheConfig, QuantConfig
from tensorrt_llm.sampling_params import SamplingParams

from harness.testing import FakeWorkers

DECODE_STEP_S = 0.02
"""A streamed decode step (every token after a request's first) lasts at least this long, as
on a GPU; the first token is the prefill's and costs nothing extra. A streaming window of
``output_len`` tokens therefore lasts at least ``(output_len - 1) * DECODE_STEP_S`` while a
prefill-only pass costs only Python time, so a measured split finds decode however loaded the
test machine is (without it both were Python overhead of the same size, and a busy host made
a prefill repetition outlast the whole window)."""

BUILDS = 0
LOADS = 0
INSTANCES: list["_TrtLLM"] = []
EOS_EVERY = 4
_FIRST_ORDINARY_ID = 3
_DTYPES = ("auto", "float16", "bfloat16", "float32")
_CONFIG_TYPES = {"build_config": BuildConfig, "kv_cache_config": KvCacheConfig,
                 "quant_config": QuantConfig}


class CompletionOutput:
    def __init__(self, index: int) -> None:
        self.index = index
        self.token_ids: list[int] = []
        self.finish_reason: str | None = None
        self._last_token_ids_len = 0

    @property
    def token_ids_diff(self) -> list[int]:
        return self.token_ids[self._last_token_ids_len:]


class RequestOutput:
    """One request's result; with streaming, an async iterator over its own updates."""

    def __init__(self, request_id: int, prompt_token_ids: list[int],
                 planned: list[list[int]], reasons: list[str], streaming: bool) -> None:
        self.request_id = request_id
        self.prompt_token_ids = prompt_token_ids
        self.outputs = [CompletionOutput(i) for i in range(len(planned))]
        self.finished = False
        self._planned = planned
        self._reasons = reasons
        self._streaming = streaming
        if not streaming:
            self._finish()

    def _finish(self) -> None:
        for output, tokens, reason in zip(self.outputs, self._planned, self._reasons, strict=True):
            output._last_token_ids_len = len(output.token_ids)
            output.token_ids = list(tokens)
            output.finish_reason = reason
        self.finished = True

    def _step(self) -> None:
        for output, tokens, reason in zip(self.outputs, self._planned, self._reasons, strict=True):
            output._last_token_ids_len = len(output.token_ids)
            output.token_ids = list(tokens[: len(output.token_ids) + 1])
            if len(output.token_ids) == len(tokens):
                output.finish_reason = reason
        self.finished = all(o.finish_reason is not None for o in self.outputs)

    def result(self) -> "RequestOutput":
        if not self.finished:
            self._finish()
        return self

    def __aiter__(self) -> "RequestOutput":
        return self

    async def __anext__(self) -> "RequestOutput":
        if self.finished:
            raise StopAsyncIteration
        decoding = any(output.token_ids for output in self.outputs)
        # sleeping lets the other requests' streams advance: in-flight batching
        await asyncio.sleep(DECODE_STEP_S if decoding else 0)
        self._step()
        return self


class _Args:
    """The parts of ``TrtLlmArgs`` llem reads (``llm.args``)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


class _TrtLLM:
    def __init__(self,
                 model: str,
                 tokenizer: str | None = None,
                 tokenizer_mode: str = "auto",
                 skip_tokenizer_init: bool = False,
                 trust_remote_code: bool = False,
                 tensor_parallel_size: int = 1,
                 dtype: str = "auto",
                 revision: str | None = None,
                 tokenizer_revision: str | None = None,
                 **kwargs: Any) -> None:
        _validate_kwargs(kwargs, dtype)
        build_config = kwargs.get("build_config") or BuildConfig(**{
            name: kwargs[name] for name in ("max_batch_size", "max_num_tokens", "max_seq_len",
                                            "max_beam_width", "max_input_len")
            if kwargs.get(name)})
        _check_runtime_limits(kwargs, build_config)
        # As validate_build_config_remaining: an unset run-time beam width comes from the
        # build_config given (or made up from defaults), before any engine is loaded.
        self.args = _Args(
            model=model, tokenizer=tokenizer, tensor_parallel_size=tensor_parallel_size,
            pipeline_parallel_size=kwargs.get("pipeline_parallel_size", 1), dtype=dtype,
            build_config=build_config,
            max_beam_width=kwargs.get("max_beam_width") or build_config.max_beam_width,
            kv_cache_config=kwargs.get("kv_cache_config") or KvCacheConfig(),
            quant_config=kwargs.get("quant_config") or QuantConfig())
        self._shut_down = False
        fraction = self.args.kv_cache_config.free_gpu_memory_fraction
        self._workers = FakeWorkers(
            tensor_parallel_size * self.args.pipeline_parallel_size,
            0.9 if fraction is None else fraction)
        self._next_request_id = 0
        self._eos_id = _tokenizer_eos(tokenizer or model)
        source = Path(model)
        checkpoint = _read_json(source / "config.json")
        if "build_config" in checkpoint:
            self._load_engine(source, checkpoint)
            # 1.0 (TrtLlmArgs against the loaded engine's config): run-time limits above the
            # engine's built ones are an error, not a clamp
            _check_runtime_limits(kwargs, self.args.build_config)
        else:
            self._build(checkpoint)
        self._executor_beam_width = self.args.max_beam_width
        INSTANCES.append(self)

    def _build(self, checkpoint: dict) -> None:
        global BUILDS
        BUILDS += 1
        args = self.args
        build_config = dataclasses.replace(args.build_config)
        if build_config.max_seq_len is None:
            build_config.max_seq_len = int(checkpoint.get("max_position_embeddings", 2048))
        args.build_config = build_config
        world = args.tensor_parallel_size * args.pipeline_parallel_size
        quant = args.quant_config
        self._pretrained = {
            "architecture": (checkpoint.get("architectures") or ["LlamaForCausalLM"])[0],
            "dtype": (checkpoint.get("dtype") or checkpoint.get("torch_dtype") or "float16")
            if args.dtype == "auto" else args.dtype,
            "vocab_size": int(checkpoint["vocab_size"]),
            "max_position_embeddings": checkpoint.get("max_position_embeddings"),
            "mapping": {"world_size": world, "tp_size": args.tensor_parallel_size,
                        "pp_size": args.pipeline_parallel_size},
            "quantization": {"quant_algo": _algo(quant.quant_algo),
                             "kv_cache_quant_algo": _algo(quant.kv_cache_quant_algo)},
        }
        self._workspace = tempfile.TemporaryDirectory(suffix="-llm-workspace")
        self._engine_dir: Path | None = Path(self._workspace.name) / "engine"
        self._engine_dir.mkdir()
        (self._engine_dir / "config.json").write_text(json.dumps({
            "version": tensorrt_llm.__version__,
            "pretrained_config": self._pretrained,
            "build_config": dataclasses.asdict(build_config),
        }, indent=2))
        for rank in range(world):
            (self._engine_dir / f"rank{rank}.engine").write_bytes(b"fake engine")

    def _load_engine(self, engine_dir: Path, engine: dict) -> None:
        global LOADS
        mapping = engine["pretrained_config"]["mapping"]
        for name, key in (("tensor_parallel_size", "tp_size"),
                          ("pipeline_parallel_size", "pp_size")):
            if getattr(self.args, name) not in (1, mapping[key]):
                raise ValueError(f"{key} {getattr(self.args, name)} is not consistent with the "
                                 f"engine's {key} {mapping[key]}")
        if not (engine_dir / "rank0.engine").is_file():
            raise RuntimeError(f"no engine file in {engine_dir}")
        known = {f.name for f in dataclasses.fields(BuildConfig)}
        self.args.build_config = BuildConfig(**{k: v for k, v in engine["build_config"].items()
                                                if k in known})
        self._pretrained = engine["pretrained_config"]
        self._engine_dir = engine_dir
        LOADS += 1

    def generate(self, inputs: Any, sampling_params: Any = None, use_tqdm: bool = True,
                 lora_request: Any = None, prompt_adapter_request: Any = None,
                 kv_cache_retention_config: Any = None,
                 disaggregated_params: Any = None) -> Any:
        unbatched = not isinstance(inputs, list) or (bool(inputs) and isinstance(inputs[0], int))
        prompts = [inputs] if unbatched else inputs
        results = []
        for i, prompt in enumerate(prompts):
            params = sampling_params[i] if isinstance(sampling_params, list) else sampling_params
            results.append(self._submit(prompt, params, streaming=False))
        return results[0] if unbatched else results

    def generate_async(self, inputs: Any, sampling_params: Any = None, lora_request: Any = None,
                       prompt_adapter_request: Any = None, streaming: bool = False,
                       kv_cache_retention_config: Any = None,
                       disaggregated_params: Any = None) -> RequestOutput:
        if streaming:
            asyncio.get_running_loop()  # RuntimeError outside a running event loop
        return self._submit(inputs, sampling_params, streaming=streaming)

    def save(self, engine_dir: str) -> None:
        if self._engine_dir is None:
            raise RuntimeError("The engine is not built yet.")
        if self._engine_dir.absolute() != Path(engine_dir).absolute():
            shutil.copytree(self._engine_dir, engine_dir, dirs_exist_ok=True)

    def shutdown(self) -> None:
        self._workers.stop()
        self._shut_down = True

    @property
    def is_shut_down(self) -> bool:
        return self._shut_down

    def _submit(self, prompt: list[int], params: SamplingParams | None,
                streaming: bool) -> RequestOutput:
        if self._shut_down:
            raise RuntimeError("the LLM is shut down")
        if not isinstance(prompt, list) or not all(isinstance(t, int) for t in prompt):
            raise TypeError(f"The inputs must be type str or list of int, but got {type(prompt)}")
        params = self._prepare(params)
        self._check_arguments(len(prompt), params)
        planned = [_plan(prompt, params, self._eos_id_of(params), self._pretrained["vocab_size"],
                         beam) for beam in range(params.n)]
        self._next_request_id += 1
        return RequestOutput(self._next_request_id, list(prompt), [p for p, _ in planned],
                             [r for _, r in planned], streaming)

    def _prepare(self, params: SamplingParams | None) -> SamplingParams:
        if params is None:
            return SamplingParams(end_id=self._eos_id)
        if not isinstance(params, SamplingParams):
            raise TypeError(f"The sampling_params must be type SamplingParams or None, "
                            f"but got {type(params)}")
        return params

    def _eos_id_of(self, params: SamplingParams) -> int:
        if params.end_id is not None:
            return params.end_id
        if self._eos_id is None:
            raise ValueError("tokenizer is required to reset end_id if it is None")
        return self._eos_id

    def _check_arguments(self, prompt_len: int, params: SamplingParams) -> None:
        build_config = self.args.build_config
        if prompt_len > build_config.max_input_len:
            raise ValueError(f"prompt length ({prompt_len}) exceeds max_input_len "
                             f"({build_config.max_input_len})")
        if prompt_len + params.max_tokens > build_config.max_seq_len:
            raise ValueError(f"The sum of prompt length ({prompt_len}) and max_tokens "
                             f"({params.max_tokens}) should not exceed max_seq_len "
                             f"({build_config.max_seq_len})")
        if params.beam_width > self._executor_beam_width:
            raise ValueError(f"sampling_params's beam_width ({params.beam_width}) should not "
                             f"exceed max_beam_width ({self._executor_beam_width})")
        if params.n > build_config.max_batch_size:
            raise ValueError(f"SamplingParams.n ({params.n}) should not exceed max_batch_size")


class _TorchLLM:
    """1.0's default ``LLM`` runs the PyTorch backend: not the engine path llem measures."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("fake tensorrt_llm: tensorrt_llm.LLM is the PyTorch-backend LLM in "
                           "1.0; the TensorRT engine LLM is tensorrt_llm._tensorrt_engine.LLM")


def _validate_kwargs(kwargs: dict, dtype: str) -> None:
    for key, value in kwargs.items():
        if key not in TRT_LLM_ARGS:
            raise ValueError(f"TrtLlmArgs got invalid argument: {key}")
        expected = _CONFIG_TYPES.get(key)
        if expected is not None and value is not None and not isinstance(value, expected):
            raise TypeError(f"{key} must be a {expected.__name__}, got {type(value).__name__}")
    if dtype not in _DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}")


def _check_runtime_limits(kwargs: dict, build_config: BuildConfig) -> None:
    for name in ("max_batch_size", "max_num_tokens"):
        value = kwargs.get(name)
        if value is not None and value > getattr(build_config, name):
            raise ValueError(f"{name} [{value}] is greater than build_config.{name} "
                             f"[{getattr(build_config, name)}] in build_config")


def _plan(prompt: list[int], params: SamplingParams, eos_id: int, vocab_size: int,
          beam: int) -> tuple:
    """The tokens one sequence produces and why it stops."""
    seed = 0 if params._greedy_decoding else (params.seed or 0)
    base = sum(prompt) + 131 * len(prompt) + 7919 * seed + 17 * beam
    span = vocab_size - _FIRST_ORDINARY_ID
    tokens: list[int] = []
    step = 0
    while len(tokens) < params.max_tokens:
        ordinary = _FIRST_ORDINARY_ID + (base + 37 * step) % span
        candidate = eos_id if step % EOS_EVERY == 2 else ordinary
        step += 1
        if candidate == eos_id and not params.ignore_eos:
            if len(tokens) >= (params.min_tokens or 0):
                return tokens, "stop"
            candidate = ordinary  # EOS is masked until min_tokens
        tokens.append(candidate)
    return tokens, "length"


def _tokenizer_eos(location: str) -> int | None:
    try:
        value = _read_json(Path(location) / "config.json").get("eos_token_id")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, int) else None


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _algo(value: Any) -> str | None:
    return None if value is None else str(value.value)
