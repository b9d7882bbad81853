"""vLLM backend: the whole workload handed to vLLM's engine at once (continuous batching).

Importing this package does not import vllm, torch or transformers; vllm is imported inside
``VllmBackend.load``, after the environment it reads at import time has been set.
"""

from harness.backends.vllm.backend import VllmBackend

__all__ = ["VllmBackend"]
