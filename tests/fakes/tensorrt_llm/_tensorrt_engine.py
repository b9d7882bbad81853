"""The TensorRT-engine LLM, where TensorRT-LLM 1.0-1.2 keep it (``_tensorrt_engine/__init__.py``
is just this re-export; the removal deleted it)."""

from tensorrt_llm.llmapi.llm import _TrtLLM as LLM

__all__ = ["LLM"]
