"""PyTorch/transformers backend: static batches through ``model.generate``.

Importing this package does not import torch or transformers; they are imported inside the
backend's methods, so the host can list and configure backends without them installed.
"""

from harness.backends.pytorch.backend import PyTorchBackend

__all__ = ["PyTorchBackend"]
