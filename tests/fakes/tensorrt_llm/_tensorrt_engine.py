"""The TensorRT-engine LLM, where TensorRT-LLM 1.0 keeps it."""

from tensorrt_llm.llmapi.llm import _TrtLLM as LLM

__all__ = ["LLM"]
