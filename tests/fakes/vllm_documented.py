"""vLLM's documented signatures of exactly what llem calls, as of vLLM 0.10.2.

Bodies are empty: only the signatures matter. Each stub names the vLLM source file it is
copied from. The tests check that the fake (``tests/fakes/vllm``) has the same parameter names
and kinds, that every call the backend makes binds to these signatures, and, where vLLM is
installed, that the installed library accepts the same calls.

Known differences between versions, none of which touches a parameter llem passes:
``LLM.__init__`` took ``task`` instead of ``runner``/``convert`` before 0.10 and gained
``allowed_media_domains`` in 0.11; ``SamplingParams.top_k`` defaults to 0 from 0.11 (-1, which
llem passes for "off", is valid in every version); ``AsyncLLM.shutdown`` gained an optional
``timeout`` and ``AsyncLLM.generate`` made its options keyword-only after 0.11.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any


class RequestOutputKind(Enum):
    """vllm/sampling_params.py, class RequestOutputKind."""

    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


class UsageContext(str, Enum):
    """vllm/usage/usage_lib.py, class UsageContext (the members that matter here)."""

    LLM_CLASS = "LLM_CLASS"
    ENGINE_CONTEXT = "ENGINE_CONTEXT"


class LLM:
    """vllm/entrypoints/llm.py, class LLM."""

    def __init__(
        self,
        model: str,
        *,
        runner: str = "auto",
        convert: str = "auto",
        tokenizer: str | None = None,
        tokenizer_mode: str = "auto",
        skip_tokenizer_init: bool = False,
        trust_remote_code: bool = False,
        allowed_local_media_path: str = "",
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        quantization: str | None = None,
        revision: str | None = None,
        tokenizer_revision: str | None = None,
        seed: int | None = None,
        gpu_memory_utilization: float = 0.9,
        swap_space: float = 4,
        cpu_offload_gb: float = 0,
        enforce_eager: bool = False,
        max_seq_len_to_capture: int = 8192,
        disable_custom_all_reduce: bool = False,
        disable_async_output_proc: bool = False,
        hf_token: bool | str | None = None,
        hf_overrides: Any = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
        override_pooler_config: Any = None,
        kv_cache_memory_bytes: int | None = None,
        compilation_config: Any = None,
        logits_processors: list[Any] | None = None,
        **kwargs: Any,  # "Arguments for EngineArgs"
    ) -> None: ...

    def generate(
        self,
        prompts: Any,
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        use_tqdm: bool = True,
        lora_request: Any = None,
        priority: list[int] | None = None,
    ) -> list[Any]: ...


class SamplingParams:
    """vllm/sampling_params.py, class SamplingParams: the fields llem sets.

    vLLM's class is a ``msgspec.Struct`` whose fields are all positional-or-keyword, in an order
    that changes between versions; llem passes them by keyword only, hence keyword-only here.
    """

    def __init__(
        self,
        *,
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = -1,
        seed: int | None = None,
        ignore_eos: bool = False,
        max_tokens: int | None = 16,
        min_tokens: int = 0,
        detokenize: bool = True,
        output_kind: RequestOutputKind = RequestOutputKind.CUMULATIVE,
    ) -> None: ...


class RequestOutput:
    """vllm/outputs.py, class RequestOutput: what generation returns. llem reads
    ``outputs[0].token_ids`` and ``num_cached_tokens`` ("The number of tokens with prefix cache
    hit"; the V1 engine sets it on every output of a request, streamed ones included).

    llem never constructs one. The parameters after ``num_cached_tokens`` differ between
    versions (keyword-only extras such as ``multi_modal_placeholders`` in some, only
    ``**kwargs`` in the newest); the leading ones, up to ``num_cached_tokens``, do not.
    """

    def __init__(
        self,
        request_id: str,
        prompt: str | None,
        prompt_token_ids: list[int] | None,
        prompt_logprobs: Any,
        outputs: list[Any],
        finished: bool,
        metrics: Any = None,
        lora_request: Any = None,
        encoder_prompt: str | None = None,
        encoder_prompt_token_ids: list[int] | None = None,
        num_cached_tokens: int | None = None,
        **kwargs: Any,
    ) -> None: ...


@dataclass
class EngineArgs:
    """vllm/engine/arg_utils.py, class EngineArgs: the fields llem sets (a dataclass of ~150)."""

    model: str = "facebook/opt-125m"
    tokenizer: str | None = None
    revision: str | None = None
    dtype: str = "auto"
    seed: int | None = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    enforce_eager: bool = False
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    enable_prefix_caching: bool | None = None
    enable_chunked_prefill: bool | None = None
    block_size: int | None = None
    disable_log_stats: bool = False


@dataclass
class AsyncEngineArgs(EngineArgs):
    """vllm/engine/arg_utils.py, class AsyncEngineArgs(EngineArgs)."""


class AsyncLLMEngine:
    """vllm/v1/engine/async_llm.py, class AsyncLLM, exported as ``vllm.AsyncLLMEngine``."""

    @classmethod
    def from_engine_args(
        cls,
        engine_args: AsyncEngineArgs,
        start_engine_loop: bool = True,
        usage_context: UsageContext = UsageContext.ENGINE_CONTEXT,
        stat_loggers: list[Any] | None = None,
    ) -> AsyncLLMEngine: ...

    async def generate(
        self,
        prompt: Any,
        sampling_params: SamplingParams,
        request_id: str,
        lora_request: Any = None,
        trace_headers: Any = None,
        priority: int = 0,
        data_parallel_rank: int | None = None,
    ) -> AsyncIterator[Any]:
        return
        yield  # an async generator, like vLLM's

    def shutdown(self) -> None: ...
