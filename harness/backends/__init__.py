"""Backends, looked up by name in a lazy registry so the host never imports torch or vllm."""

from __future__ import annotations

import importlib

from harness.backends.base import Backend
from harness.errors import ConfigError
from harness.schema.messages import did_you_mean

REGISTRY: dict[str, str] = {
    "pytorch": "harness.backends.pytorch:PyTorchBackend",
    "vllm": "harness.backends.vllm:VllmBackend",
    "tensorrt": "harness.backends.tensorrt:TensorRtBackend",
}
"""Backend name -> "module:Class"; the module imports no engine library at import time."""


def backend_class(name: str) -> type[Backend]:
    """Import and return the backend class registered under ``name``."""
    if name not in REGISTRY:
        guess = did_you_mean(name, list(REGISTRY))
        hint = f"; did you mean '{guess}'?" if guess else ""
        raise ConfigError(
            f"unknown backend '{name}'{hint}", fix=f"use one of {', '.join(REGISTRY)}"
        )
    module_name, _, class_name = REGISTRY[name].partition(":")
    module = importlib.import_module(module_name)
    cls: type[Backend] = getattr(module, class_name)
    return cls


__all__ = ["REGISTRY", "Backend", "backend_class"]
