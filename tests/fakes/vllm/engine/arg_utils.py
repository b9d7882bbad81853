"""``vllm.engine.arg_utils`` (vllm/engine/arg_utils.py): engine arguments and their resolution.

``EngineArgs`` is a dataclass, as in vLLM, so an argument it does not know is a ``TypeError``.
It has the fields ``LLM.__init__`` forwards plus the ones llem sets through ``**kwargs``, and a
few more that users commonly pass through. Unset (None) fields resolve to vLLM's defaults for
a GPU below 70 GiB, which depend on the entry point (``EngineArgs.get_batch_defaults``, looked
up by usage context): max_num_seqs 256 for the ``LLM`` class and the OpenAI server, 128 for any
other context (``AsyncLLMEngine.from_engine_args`` defaults to ``ENGINE_CONTEXT``);
max_num_batched_tokens 8192 for the ``LLM`` class, 2048 for the server and other contexts;
block_size 16, gpu_memory_utilization 0.9, KV cache dtype "auto", prefix caching and chunked
prefill on. The number of KV-cache blocks is made up (it depends on free GPU memory in vLLM).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vllm._fake import FakeModel
from vllm.config import (
    CacheConfig,
    ModelConfig,
    ParallelConfig,
    SchedulerConfig,
    TorchDtype,
    VllmConfig,
)
from vllm.usage.usage_lib import UsageContext

DTYPES = {"half": "float16", "float16": "float16", "bfloat16": "bfloat16", "float": "float32",
          "float32": "float32"}
QUANTIZATIONS = {"awq", "gptq", "fp8", "bitsandbytes", "compressed-tensors"}
KV_CACHE_DTYPES = {"auto", "fp8", "fp8_e4m3", "fp8_e5m2"}
DEFAULT_MAX_NUM_SEQS = {UsageContext.LLM_CLASS: 256, UsageContext.OPENAI_API_SERVER: 256}
FALLBACK_MAX_NUM_SEQS = 128
"""``SchedulerConfig.DEFAULT_MAX_NUM_SEQS``: for a usage context the table does not name."""
DEFAULT_BATCHED_TOKENS = {UsageContext.LLM_CLASS: 8192, UsageContext.OPENAI_API_SERVER: 2048}
FALLBACK_BATCHED_TOKENS = 2048


@dataclass
class EngineArgs:
    model: str = "facebook/opt-125m"
    runner: str = "auto"
    convert: str = "auto"
    tokenizer: str | None = None
    tokenizer_mode: str = "auto"
    skip_tokenizer_init: bool = False
    trust_remote_code: bool = False
    allowed_local_media_path: str = ""
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    dtype: str = "auto"
    quantization: str | None = None
    revision: str | None = None
    tokenizer_revision: str | None = None
    seed: int | None = None
    gpu_memory_utilization: float = 0.9
    kv_cache_memory_bytes: int | None = None
    swap_space: float = 4
    cpu_offload_gb: float = 0
    enforce_eager: bool = False
    max_seq_len_to_capture: int = 8192
    disable_custom_all_reduce: bool = False
    disable_async_output_proc: bool = False
    hf_token: bool | str | None = None
    hf_overrides: Any = None
    mm_processor_kwargs: dict[str, Any] | None = None
    override_pooler_config: Any = None
    compilation_config: Any = None
    logits_processors: list[Any] | None = None
    kv_cache_dtype: str = "auto"
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    enable_prefix_caching: bool | None = None
    enable_chunked_prefill: bool | None = None
    block_size: int | None = None
    max_model_len: int | None = None
    disable_log_stats: bool = False

    def create_engine_config(
        self, usage_context: UsageContext = UsageContext.ENGINE_CONTEXT
    ) -> VllmConfig:
        model = FakeModel.from_directory(self.model)
        self._check()
        chunked = True if self.enable_chunked_prefill is None else self.enable_chunked_prefill
        max_model_len = self.max_model_len or model.max_model_len
        return VllmConfig(
            model_config=ModelConfig(
                model=self.model,
                tokenizer=self.tokenizer or self.model,
                revision=self.revision,
                dtype=TorchDtype(self._dtype(model)),
                max_model_len=max_model_len,
                quantization=self.quantization,
                enforce_eager=self.enforce_eager,
                seed=self.seed,
            ),
            cache_config=self._cache_config(),
            scheduler_config=SchedulerConfig(
                max_num_seqs=self.max_num_seqs or DEFAULT_MAX_NUM_SEQS.get(
                    usage_context, FALLBACK_MAX_NUM_SEQS),
                max_num_batched_tokens=self._batched_tokens(usage_context, chunked, max_model_len),
                enable_chunked_prefill=chunked,
            ),
            parallel_config=ParallelConfig(
                tensor_parallel_size=self.tensor_parallel_size,
                pipeline_parallel_size=self.pipeline_parallel_size,
            ),
        )

    def _check(self) -> None:
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise ValueError(f"Unknown dtype: {self.dtype}")
        if self.quantization is not None and self.quantization not in QUANTIZATIONS:
            raise ValueError(f"Unknown quantization method: {self.quantization}")
        if self.kv_cache_dtype not in KV_CACHE_DTYPES:
            raise ValueError(f"Unknown kv cache dtype: {self.kv_cache_dtype}")
        if self.tensor_parallel_size < 1:
            raise ValueError("tensor_parallel_size must be at least 1")

    def _dtype(self, model: FakeModel) -> str:
        if self.dtype != "auto":
            return DTYPES[self.dtype]
        # vLLM runs float32 checkpoints in float16 unless asked for float32 explicitly.
        return "float16" if model.dtype == "float32" else model.dtype

    def _cache_config(self) -> CacheConfig:
        block_size = self.block_size or 16
        return CacheConfig(
            block_size=block_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            cache_dtype=self.kv_cache_dtype,
            enable_prefix_caching=(
                True if self.enable_prefix_caching is None else self.enable_prefix_caching
            ),
            num_gpu_blocks=int(40_000 * self.gpu_memory_utilization) * 16 // block_size,
        )

    def _batched_tokens(self, usage_context: UsageContext, chunked: bool, max_len: int) -> int:
        if self.max_num_batched_tokens is not None:
            return self.max_num_batched_tokens
        if not chunked:
            return max(max_len, FALLBACK_BATCHED_TOKENS)
        return DEFAULT_BATCHED_TOKENS.get(usage_context, FALLBACK_BATCHED_TOKENS)


@dataclass
class AsyncEngineArgs(EngineArgs):
    enable_log_requests: bool = False
