"""``vllm.config``: the resolved engine configuration, with the attributes llem reads."""

from __future__ import annotations

from dataclasses import dataclass


class TorchDtype:
    """Stands in for a ``torch.dtype``: prints as ``torch.<name>``, like the real one."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"torch.{self.name}"


@dataclass
class ModelConfig:
    model: str
    tokenizer: str
    revision: str | None
    dtype: TorchDtype
    max_model_len: int
    quantization: str | None
    enforce_eager: bool
    seed: int | None


@dataclass
class CacheConfig:
    block_size: int
    gpu_memory_utilization: float
    cache_dtype: str
    enable_prefix_caching: bool
    num_gpu_blocks: int


@dataclass
class SchedulerConfig:
    max_num_seqs: int
    max_num_batched_tokens: int
    enable_chunked_prefill: bool


@dataclass
class ParallelConfig:
    tensor_parallel_size: int
    pipeline_parallel_size: int


@dataclass
class VllmConfig:
    model_config: ModelConfig
    cache_config: CacheConfig
    scheduler_config: SchedulerConfig
    parallel_config: ParallelConfig
