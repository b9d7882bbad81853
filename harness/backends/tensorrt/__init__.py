"""TensorRT-LLM backend: engines built once per configuration, cached, run in flight.

Importing this package does not import tensorrt_llm; it is imported inside the backend's
methods, so the host can list and configure backends without it installed.
"""

from harness.backends.tensorrt.backend import TensorRtBackend

__all__ = ["TensorRtBackend"]
