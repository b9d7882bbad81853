"""Backends, looked up by name in a lazy registry so the host never imports torch or vllm."""

from __future__ import annotations

import importlib

from harness.backends.base import Backend
from harness.errors import ConfigError, PreflightError
from harness.schema.messages import did_you_mean

REGISTRY: dict[str, str] = {
    "pytorch": "harness.backends.pytorch:PyTorchBackend",
}
"""Backend name -> "module:Class". vLLM and TensorRT-LLM are not implemented yet."""

PLANNED = ("vllm", "tensorrt")


def backend_class(name: str) -> type[Backend]:
    """Import and return the backend class registered under ``name``."""
    if name not in REGISTRY:
        if name in PLANNED:
            raise PreflightError(
                f"backend '{name}' is not implemented in this version of llem",
                fix=f"use backend: {', '.join(REGISTRY)}",
            )
        guess = did_you_mean(name, list(REGISTRY) + list(PLANNED))
        hint = f"; did you mean '{guess}'?" if guess else ""
        raise ConfigError(
            f"unknown backend '{name}'{hint}", fix=f"use one of {', '.join(REGISTRY)}"
        )
    module_name, _, class_name = REGISTRY[name].partition(":")
    module = importlib.import_module(module_name)
    cls: type[Backend] = getattr(module, class_name)
    return cls


__all__ = ["REGISTRY", "Backend", "backend_class"]
