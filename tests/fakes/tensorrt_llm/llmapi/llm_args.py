"""KvCacheConfig (tensorrt_llm/llmapi/llm_args.py), QuantConfig
(tensorrt_llm/models/modeling_utils.py), QuantAlgo (tensorrt_llm/quantization/mode.py) and the
names ``TrtLlmArgs`` accepts, as far as llem relies on them."""

from dataclasses import dataclass
from enum import Enum


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
    """Pydantic (extra forbidden) in the library; a keyword-only dataclass here."""

    enable_block_reuse: bool = True
    max_tokens: int | None = None
    max_attention_window: list[int] | None = None
    sink_token_length: int | None = None
    free_gpu_memory_fraction: float | None = None
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


TRT_LLM_ARGS = frozenset({
    # BaseLlmArgs
    "pipeline_parallel_size", "context_parallel_size", "gpus_per_node",
    "moe_tensor_parallel_size", "moe_expert_parallel_size", "enable_attention_dp",
    "cp_config", "load_format", "enable_lora", "max_lora_rank", "max_loras", "max_cpu_loras",
    "lora_config", "enable_prompt_adapter", "max_prompt_adapter_token", "quant_config",
    "calib_config", "build_config", "kv_cache_config", "enable_chunked_prefill",
    "guided_decoding_backend", "batched_logits_processor", "iter_stats_max_iterations",
    "request_stats_max_iterations", "peft_cache_config", "scheduler_config",
    "cache_transceiver_config", "speculative_config", "max_batch_size", "max_input_len",
    "max_seq_len", "max_beam_width", "max_num_tokens", "gather_generation_logits",
    "num_postprocess_workers", "postprocess_tokenizer_dir", "reasoning_parser",
    # TrtLlmArgs
    "auto_parallel", "auto_parallel_world_size", "enable_tqdm", "workspace",
    "enable_build_cache", "extended_runtime_perf_knob_config", "embedding_parallel_mode",
    "fast_build", "batching_type", "normalize_log_probs",
})
"""Keyword arguments ``LLM(...)`` takes besides its explicit parameters."""
