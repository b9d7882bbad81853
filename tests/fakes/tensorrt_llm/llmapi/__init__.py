"""``tensorrt_llm.llmapi``: the configuration classes llem passes to ``LLM(...)``."""

from tensorrt_llm.builder import BuildConfig
from tensorrt_llm.llmapi.llm import RequestOutput
from tensorrt_llm.llmapi.llm import _TorchLLM as LLM
from tensorrt_llm.llmapi.llm_args import KvCacheConfig, QuantAlgo, QuantConfig
from tensorrt_llm.sampling_params import SamplingParams

__all__ = ["LLM", "BuildConfig", "KvCacheConfig", "QuantAlgo", "QuantConfig", "RequestOutput",
           "SamplingParams"]
