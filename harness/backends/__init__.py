"""Backends, looked up by name through the catalog so the host never imports torch or vllm.

Importing this package imports only :mod:`harness.backends.catalog` (the schema reads it while
it is itself being imported); the :class:`Backend` base class loads on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from harness.backends.catalog import BY_NAME
from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.backends.base import Backend

REGISTRY: dict[str, str] = {name: entry.implementation for name, entry in BY_NAME.items()}
"""Backend name -> "module:Class"; the module imports no engine library at import time."""


def backend_class(name: str) -> type[Backend]:
    """Import and return the backend class registered under ``name``.

    Raises:
        ConfigError: no backend has that name (with the closest one, if any).

    """
    if name not in REGISTRY:
        from harness.schema.messages import did_you_mean

        guess = did_you_mean(name, list(REGISTRY))
        hint = f"; did you mean '{guess}'?" if guess else ""
        raise ConfigError(
            f"unknown backend '{name}'{hint}", fix=f"use one of {', '.join(REGISTRY)}"
        )
    module_name, _, class_name = REGISTRY[name].partition(":")
    module = importlib.import_module(module_name)
    cls: type[Backend] = getattr(module, class_name)
    return cls


def __getattr__(name: str) -> Any:
    # The base class imports the schema, which imports the catalog through this package.
    if name == "Backend":
        return importlib.import_module("harness.backends.base").Backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["REGISTRY", "Backend", "backend_class"]
