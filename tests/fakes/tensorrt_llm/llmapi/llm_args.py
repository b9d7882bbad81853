"""KvCacheConfig, CudaGraphConfig, SchedulerConfig (tensorrt_llm/llmapi/llm_args.py), QuantConfig
(tensorrt_llm/models/modeling_utils.py), QuantAlgo (tensorrt_llm/quantization/mode.py) and the
names ``TrtLlmArgs`` and ``TorchLlmArgs`` accept, as far as llem relies on them.

The library's classes are pydantic models (extra fields forbidden); here they are keyword-only
dataclasses with the validators llem's settings meet.
"""

from dataclasses import dataclass
from enum import Enum

from tensorrt_llm import _release


class QuantAlgo(str, Enum):
    W8A16 = "W8A16"
    W4A16 = "W4A16"
    W4A16_AWQ = "W4A16_AWQ"
    W4A8_AWQ = "W4A8_AWQ"
    W8A16_GPTQ = "W8A16_GPTQ"
    W4A16_GPTQ = "W4A16_GPTQ"
    W8A8_SQ_PER_CHANNEL = "W8A8_SQ_PER_CHANNEL"
    W8A8_SQ_PER_TENSOR_PLUGIN = "W8A8_SQ_PER_TENSOR_PLUGIN"
    FP8 = "FP8"
    FP8_PER_CHANNEL_PER_TOKEN = "FP8_PER_CHANNEL_PER_TOKEN"
    FP8_BLOCK_SCALES = "FP8_BLOCK_SCALES"
    INT8 = "INT8"
    NVFP4 = "NVFP4"
    MIXED_PRECISION = "MIXED_PRECISION"
    NO_QUANT = "NO_QUANT"


@dataclass
class QuantConfig:
    quant_algo: QuantAlgo | None = None
    kv_cache_quant_algo: QuantAlgo | None = None
    group_size: int = 128
    smoothquant_val: float = 0.5
    clamp_val: list[float] | None = None
    use_meta_recipe: bool = False
    has_zero_point: bool = False
    pre_quant_scale: bool = False
    exclude_modules: list[str] | None = None

    def __post_init__(self) -> None:
        for name in ("quant_algo", "kv_cache_quant_algo"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, QuantAlgo):
                raise ValueError(f"QuantConfig.{name} must be a QuantAlgo, got {value!r}")


@dataclass(kw_only=True)
class KvCacheConfig:
    """``free_gpu_memory_fraction`` defaults to None (the C++ runtime's 0.9) as in the fake's
    1.0 layout (kept for 1.2.1, unverified there) and to 0.9 after the removal (post-removal
    ``llm_args.py``, index commit 0004396)."""

    enable_block_reuse: bool = True
    max_tokens: int | None = None
    max_attention_window: list[int] | None = None
    sink_token_length: int | None = None
    free_gpu_memory_fraction: float | None = None if _release.has_engine_runtime() else 0.9
    host_cache_size: int | None = None
    onboard_blocks: bool = True
    cross_kv_cache_fraction: float | None = None
    secondary_offload_min_priority: int | None = None
    event_buffer_max_size: int = 0
    enable_partial_reuse: bool = True
    copy_on_partial_reuse: bool = True

    def __post_init__(self) -> None:
        fraction = self.free_gpu_memory_fraction
        if fraction is not None and not 0 <= fraction <= 1:
            raise ValueError("kv_cache_config.free_gpu_memory_fraction must be a float "
                             "between 0 and 1")


def _generated_batch_sizes(max_batch_size: int, enable_padding: bool) -> list[int]:
    """``CudaGraphConfig._generate_cuda_graph_batch_sizes``.

    The base lists are the post-removal ``llm_args.py``'s (index commit 0004396): without
    padding 1-31, 32, 64, 128 and powers of two up to the maximum; with padding 1, 2, 4, the
    multiples of 8 to 128, then steps of 64. Unverified (remembered from 1.0): sizes above the
    maximum are dropped and the maximum itself is appended when missing.
    """
    if enable_padding:
        sizes = [1, 2, 4, *range(8, 129, 8), *range(192, max_batch_size + 1, 64)]
    else:
        sizes = [*range(1, 32), 32, 64, 128]
        power = 256
        while power < max_batch_size:
            sizes.append(power)
            power *= 2
    sizes = sorted(size for size in sizes if size <= max_batch_size)
    if not sizes or sizes[-1] != max_batch_size:
        sizes.append(max_batch_size)
    return sizes


@dataclass(kw_only=True)
class CudaGraphConfig:
    """``CudaGraphConfig`` (1.0-1.2; after the removal ``DecodeCudaGraphConfig``, which adds
    ``mode="decode"``): the batch sizes the PyTorch runtime captures CUDA graphs for.

    Its validator (both ``llm_args.py`` versions in the notes): given ``batch_sizes``, they are
    sorted and ``max_batch_size`` becomes their maximum (a different ``max_batch_size`` is a
    ValueError); given neither, ``max_batch_size`` is 128; ``batch_sizes`` are then generated up
    to ``max_batch_size``.
    """

    batch_sizes: list[int] | None = None
    max_batch_size: int = 0
    enable_padding: bool = False

    def __post_init__(self) -> None:
        if self.max_batch_size < 0:
            raise ValueError("cuda_graph_config.max_batch_size must be non-negative")
        if self.batch_sizes:
            self.batch_sizes = sorted(self.batch_sizes)
            if self.max_batch_size and self.max_batch_size != self.batch_sizes[-1]:
                raise ValueError("Please don't set both cuda_graph_config.batch_sizes and "
                                 "cuda_graph_config.max_batch_size.")
            self.max_batch_size = self.batch_sizes[-1]
        else:
            self.max_batch_size = self.max_batch_size or 128
            self.batch_sizes = _generated_batch_sizes(self.max_batch_size, self.enable_padding)


@dataclass
class DynamicBatchConfig:
    """tensorrt_llm/llmapi/llm_args.py (1.0)."""

    enable_batch_size_tuning: bool
    enable_max_num_tokens_tuning: bool
    dynamic_batch_moving_average_window: int


@dataclass
class SchedulerConfig:
    """tensorrt_llm/llmapi/llm_args.py (1.0): the LLM API's default has no dynamic batching."""

    capacity_scheduler_policy: str = "GUARANTEED_NO_EVICT"
    context_chunking_policy: str | None = None
    dynamic_batch_config: DynamicBatchConfig | None = None

    def __post_init__(self) -> None:
        if isinstance(self.dynamic_batch_config, dict):
            self.dynamic_batch_config = DynamicBatchConfig(**self.dynamic_batch_config)


_BASE_LLM_ARGS = frozenset({
    "pipeline_parallel_size", "context_parallel_size", "gpus_per_node",
    "moe_tensor_parallel_size", "moe_expert_parallel_size", "enable_attention_dp",
    "cp_config", "load_format", "enable_lora", "max_lora_rank", "max_loras", "max_cpu_loras",
    "lora_config", "enable_prompt_adapter", "max_prompt_adapter_token", "quant_config",
    "calib_config", "kv_cache_config", "enable_chunked_prefill",
    "guided_decoding_backend", "batched_logits_processor", "iter_stats_max_iterations",
    "request_stats_max_iterations", "peft_cache_config", "scheduler_config",
    "cache_transceiver_config", "speculative_config", "max_batch_size", "max_input_len",
    "max_seq_len", "max_beam_width", "max_num_tokens", "gather_generation_logits",
    "num_postprocess_workers", "postprocess_tokenizer_dir", "reasoning_parser",
})
"""``BaseLlmArgs`` fields (1.0) less ``build_config``, which the removal took out."""

TRT_LLM_ARGS = _BASE_LLM_ARGS | frozenset({
    "build_config",
    # TrtLlmArgs
    "auto_parallel", "auto_parallel_world_size", "enable_tqdm", "workspace",
    "enable_build_cache", "extended_runtime_perf_knob_config", "embedding_parallel_mode",
    "fast_build", "batching_type", "normalize_log_probs",
})
"""Keyword arguments the TensorRT-engine ``LLM(...)`` takes besides its explicit parameters."""

TORCH_LLM_ARGS = _BASE_LLM_ARGS | frozenset({
    # BaseLLM.__init__ accepts it besides the args class's fields (1.1-era llm.py)
    "backend",
    # TorchLlmArgs (1.1-era and post-removal llm_args.py)
    "cuda_graph_config", "attn_backend", "disable_overlap_scheduler", "print_iter_log",
    "torch_compile_config", "stream_interval", "enable_iter_perf_stats", "enable_autotuner",
    "garbage_collection_gen0_threshold",
}) | (frozenset({"build_config"}) if _release.has_engine_runtime() else frozenset())
"""Keyword arguments the PyTorch-runtime ``LLM(...)`` takes besides its explicit parameters.

Before the removal ``TorchLlmArgs`` still has a dummy ``build_config`` (1.1-era ``llm_args.py``),
which the fake accepts and ignores; after it, ``build_config`` is an unknown argument."""

TORCH_LIMIT_DEFAULTS = {"max_batch_size": 2048, "max_num_tokens": 8192, "max_input_len": 1024,
                        "max_beam_width": 1, "max_seq_len": None}
"""What ``llm.args`` holds for an unset (or None) limit on the PyTorch runtime: post-removal
``BaseLlmArgs`` defaults (normalised from None by ``normalize_optional_fields_to_defaults``); the
1.1-era args copy ``BuildConfig``'s defaults back, the same values (BuildConfig's unverified)."""

ATTENTION_BACKENDS = ("VANILLA", "TRTLLM", "FLASHINFER")
"""``TorchLlmArgs.attn_backend`` values (post-removal telemetry list; default ``TRTLLM``). The
library takes any string and fails at model load (unverified); the fake refuses others at once."""
