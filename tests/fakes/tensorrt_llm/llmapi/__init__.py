"""``tensorrt_llm.llmapi``: the ``LLM`` and the configuration classes llem passes to it.

``BuildConfig`` is exported while the release has the TensorRT-engine runtime; the removal took
it out of ``llm_args.py`` (post-removal index commit 0004396 never references it; whether the
package still exports it was not read, so the fake's post-removal layout does not).
"""

from tensorrt_llm import _release
from tensorrt_llm.llmapi.llm import LLM, RequestOutput
from tensorrt_llm.llmapi.llm_args import (
    CudaGraphConfig,
    KvCacheConfig,
    QuantAlgo,
    QuantConfig,
    SchedulerConfig,
)
from tensorrt_llm.sampling_params import SamplingParams

__all__ = ["LLM", "CudaGraphConfig", "KvCacheConfig", "QuantAlgo", "QuantConfig",
           "RequestOutput", "SamplingParams", "SchedulerConfig"]

if _release.has_engine_runtime():
    from tensorrt_llm.builder import BuildConfig

    __all__ += ["BuildConfig"]
