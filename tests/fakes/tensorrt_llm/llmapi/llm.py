"""The LLM API's LLM classes (tensorrt_llm/llmapi/llm.py) without a GPU.

- ``BaseLLM``: what both runtimes share (``generate``, ``generate_async``, ``shutdown``).
- ``_TorchLLM``, the PyTorch runtime: the top-level ``tensorrt_llm.LLM`` from 1.0 (the public
  ``LLM`` subclasses it: "Bases: _TorchLLM" in the 1.1-1.4 reference docs). It loads a Hugging
  Face checkpoint directory and never builds an engine.
- ``_TrtLLM``, the TensorRT-engine runtime, while the release has it (see
  :mod:`tensorrt_llm.llmapi._trt_llm`); the top-level ``LLM`` in 0.x.

Generation is deterministic: token ``i`` of a request is EOS for every ``i % 4 == 2`` and an
ordinary id derived from the prompt otherwise, so a request stops early at EOS unless
``ignore_eos`` is set or ``min_tokens`` masks it.

Module-level counters let tests assert what happened: ``BUILDS`` (engines built), ``LOADS``
(engines loaded from a directory), ``TORCH_LOADS`` (checkpoints the PyTorch runtime loaded)
and ``INSTANCES`` (every LLM created, either runtime, to check shutdown).
"""

import asyncio
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from tensorrt_llm import _release
from tensorrt_llm.llmapi.llm_args import (
    ATTENTION_BACKENDS,
    TORCH_LIMIT_DEFAULTS,
    TORCH_LLM_ARGS,
    CudaGraphConfig,
    KvCacheConfig,
    SchedulerConfig,
)
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
TORCH_LOADS = 0
INSTANCES: list["BaseLLM"] = []
EOS_EVERY = 4
DTYPES = ("auto", "float16", "bfloat16", "float32")
_FIRST_ORDINARY_ID = 3
_DEFAULT_MAX_SEQ_LEN = 2048


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
    """The parts of ``TrtLlmArgs``/``TorchLlmArgs`` llem reads (``llm.args``)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


class BaseLLM:
    """Generation and shutdown, shared by both runtimes as ``BaseLLM`` shares them.

    A subclass sets ``args``, ``_eos_id`` and ``_vocab_size``, calls :meth:`_start` to put its
    workers on the GPUs and :meth:`_register` once constructed, and checks each request in
    :meth:`_check_arguments`.
    """

    args: _Args
    _eos_id: int | None
    _vocab_size: int

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
        # BaseLLM.__init__'s signature, which both runtimes' LLM classes inherit
        self._setup(model, tokenizer, tensor_parallel_size, dtype, kwargs)

    def _setup(self, model: str, tokenizer: str | None, tensor_parallel_size: int, dtype: str,
               kwargs: dict) -> None:
        raise NotImplementedError

    def _start(self) -> None:
        fraction = self.args.kv_cache_config.free_gpu_memory_fraction
        self._workers = FakeWorkers(
            self.args.tensor_parallel_size * self.args.pipeline_parallel_size,
            0.9 if fraction is None else fraction)
        self._shut_down = False
        self._next_request_id = 0

    def _register(self) -> None:
        INSTANCES.append(self)

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
        params = self._check_arguments(len(prompt), params)
        planned = [_plan(prompt, params, self._eos_id_of(params), self._vocab_size, beam)
                   for beam in range(params.n)]
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

    def _check_arguments(self, prompt_len: int, params: SamplingParams) -> SamplingParams:
        raise NotImplementedError

    @staticmethod
    def _check_seq_len(prompt_len: int, params: SamplingParams, max_seq_len: int) -> None:
        if prompt_len + params.max_tokens > max_seq_len:
            raise ValueError(f"The sum of prompt length ({prompt_len}) and max_tokens "
                             f"({params.max_tokens}) should not exceed max_seq_len "
                             f"({max_seq_len})")

    @staticmethod
    def _check_beam_width(params: SamplingParams, max_beam_width: int) -> None:
        if params.beam_width > max_beam_width:
            raise ValueError(f"sampling_params's beam_width ({params.beam_width}) should not "
                             f"exceed max_beam_width ({max_beam_width})")


class _TorchLLM(BaseLLM):
    """The PyTorch runtime on a Hugging Face checkpoint directory (``config.json`` without
    ``build_config``; an engine directory is refused with a ValueError, whose text in the library
    is unverified).

    Arguments (``BaseLLM.__init__``'s signature, 1.1-era ``llm.py``): keyword arguments outside
    ``TORCH_LLM_ARGS`` are a ValueError "<class> got invalid argument: <key>" (as
    ``BaseLLM.__init__``); ``kv_cache_config``, ``cuda_graph_config`` and ``scheduler_config``
    take their class or a mapping of its fields (pydantic coerces mappings), anything else is a
    ValueError (pydantic's ValidationError is one); ``attn_backend`` must be one of
    ``ATTENTION_BACKENDS`` and ``backend`` "pytorch" (after the removal the migration guide says
    ``LLM(backend="tensorrt")`` raises ValueError; before it the fake refuses other backends too,
    unverified: the engine path is ``tensorrt_llm._tensorrt_engine.LLM``).

    ``llm.args`` holds what was passed over the resolved defaults: ``TORCH_LIMIT_DEFAULTS`` for
    the limits (None counts as unset), ``max_seq_len`` from the checkpoint's
    ``max_position_embeddings`` when unset (unverified: the library resolves it while loading
    the model), ``KvCacheConfig()``, ``CudaGraphConfig()`` (None turns CUDA graphs off),
    ``attn_backend="TRTLLM"``, ``disable_overlap_scheduler=False``, ``backend="pytorch"``,
    ``dtype`` as passed (whether the library writes the checkpoint's dtype back is unverified).

    Per request (``_check_arguments`` for the PyTorch backend as remembered from 1.x,
    unverified): without ``enable_chunked_prefill``, a prompt above ``max_num_tokens`` is a
    ValueError; prompt + ``max_tokens`` above ``max_seq_len`` is not refused: ``max_tokens`` is
    clamped with a warning (the worker's ``_deduce_max_tokens``); neither the beam width nor
    ``max_input_len`` is checked.
    """

    def _setup(self, model: str, tokenizer: str | None, tensor_parallel_size: int, dtype: str,
               kwargs: dict) -> None:
        global TORCH_LOADS
        self._validate(kwargs, dtype)
        checkpoint = _read_json(Path(model) / "config.json")
        if "build_config" in checkpoint:
            raise ValueError(f"{model} is a TensorRT engine directory (its config.json has "
                             f"build_config); the PyTorch backend loads Hugging Face "
                             f"checkpoints")
        self.args = _torch_args(model, tokenizer, tensor_parallel_size, dtype, kwargs,
                                checkpoint)
        self._eos_id = _tokenizer_eos(tokenizer or model)
        self._vocab_size = int(checkpoint["vocab_size"])
        self._start()
        TORCH_LOADS += 1
        self._register()

    def _validate(self, kwargs: dict, dtype: str) -> None:
        for key in kwargs:
            if key not in TORCH_LLM_ARGS:
                raise ValueError(f"{type(self).__name__} got invalid argument: {key}")
        backend = kwargs.get("backend")
        if backend not in (None, "pytorch"):
            removed = "" if _release.has_engine_runtime() else "; PyTorch is the only backend"
            raise ValueError(f"backend {backend!r} is not supported by {type(self).__name__}"
                             f"{removed}: omit backend")
        attention = kwargs.get("attn_backend", "TRTLLM")
        if attention not in ATTENTION_BACKENDS:
            raise ValueError(f"attn_backend must be one of {', '.join(ATTENTION_BACKENDS)}, "
                             f"got {attention!r}")
        if not isinstance(kwargs.get("disable_overlap_scheduler", False), bool):
            raise ValueError("disable_overlap_scheduler must be a bool")
        if dtype not in DTYPES:
            raise ValueError(f"unsupported dtype {dtype!r}")

    def _check_arguments(self, prompt_len: int, params: SamplingParams) -> SamplingParams:
        args = self.args
        if not args.enable_chunked_prefill and prompt_len > args.max_num_tokens:
            raise ValueError(f"The sum of prompt length ({prompt_len}) and query length (0) "
                             f"should not exceed max_num_tokens ({args.max_num_tokens})")
        # The PyTorch backend's check returns here; its worker (_deduce_max_tokens) clamps
        # max_tokens to max_seq_len - prompt with a warning instead of refusing the request.
        room = args.max_seq_len - prompt_len
        if params.max_tokens > room:
            logging.getLogger("tensorrt_llm").warning(
                "max_tokens (%d) is larger than max_seq_len - prompt length (%d); clamped",
                params.max_tokens, room)
            params = dataclasses.replace(params, max_tokens=max(room, 0))  # the caller's stays
        return params


def _torch_args(model: str, tokenizer: str | None, tensor_parallel_size: int, dtype: str,
                kwargs: dict, checkpoint: dict) -> _Args:
    limits = {name: default if kwargs.get(name) is None else kwargs[name]
              for name, default in TORCH_LIMIT_DEFAULTS.items()}
    # PyTorchModelEngine._init_max_seq_len: unset, the model's; above the model's, lowered to
    # it with a warning (the model's limit here without RoPE scaling: the tiny model has none)
    # BaseLlmArgs.set_runtime_knobs_from_build_config (1.1-era llm_args.py): before the
    # removal, a build_config given to the PyTorch runtime sets its limits over the run-time ones
    build_config = kwargs.get("build_config")
    if build_config is not None and _release.has_engine_runtime():
        for name in ("max_batch_size", "max_num_tokens", "max_seq_len", "max_input_len",
                     "max_beam_width"):
            if getattr(build_config, name, None) is not None:
                limits[name] = getattr(build_config, name)
    model_limit = checkpoint_max_seq_len(checkpoint)
    if limits["max_seq_len"] is None or limits["max_seq_len"] > model_limit:
        limits["max_seq_len"] = model_limit
    values = {name: value for name, value in kwargs.items() if name != "build_config"}
    graphs = kwargs.get("cuda_graph_config", CudaGraphConfig())
    values.update(
        model=model, tokenizer=tokenizer, tensor_parallel_size=tensor_parallel_size,
        pipeline_parallel_size=kwargs.get("pipeline_parallel_size", 1), dtype=dtype,
        backend="pytorch", **limits,
        kv_cache_config=_config("kv_cache_config", kwargs.get("kv_cache_config"), KvCacheConfig),
        scheduler_config=_config("scheduler_config", kwargs.get("scheduler_config"),
                                 SchedulerConfig),
        cuda_graph_config=None if graphs is None else _config("cuda_graph_config", graphs,
                                                              CudaGraphConfig),
        attn_backend=kwargs.get("attn_backend", "TRTLLM"),
        disable_overlap_scheduler=kwargs.get("disable_overlap_scheduler", False),
        enable_chunked_prefill=kwargs.get("enable_chunked_prefill", False))
    return _Args(**values)


def _config(name: str, value: Any, cls: type) -> Any:
    """A config argument: its class, a mapping of its fields, or (None) its default."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        return cls(**value)
    raise ValueError(f"{name} must be a {cls.__name__} or a mapping of its fields, "
                     f"got {type(value).__name__}")


def checkpoint_max_seq_len(checkpoint: dict) -> int:
    """The longest sequence a checkpoint's ``config.json`` allows (2048 when it does not say)."""
    return int(checkpoint.get("max_position_embeddings", _DEFAULT_MAX_SEQ_LEN))


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
    return dict(json.loads(path.read_text()))


if _release.has_engine_runtime():  # 0.x-1.2; the removal took it out
    from tensorrt_llm.llmapi._trt_llm import _TrtLLM

if _release.engine_is_top_level():
    LLM = _TrtLLM  # 0.17-0.21: the LLM API's LLM is the TensorRT-engine one
else:
    class LLM(_TorchLLM):
        """The public ``LLM`` from 1.0: the PyTorch runtime ("Bases: _TorchLLM")."""
