"""Loading a transformers causal LM offline, as the config asks for it.

Each function imports torch/transformers itself; nothing here runs at import time.
"""

from __future__ import annotations

import importlib
from typing import Any

from harness import models
from harness.errors import BackendError
from harness.schema.config import ExperimentConfig, PyTorchConfig

TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
"""Config precision -> torch dtype name."""

_LOAD_ERRORS = (OSError, ValueError, ImportError, RuntimeError, KeyError, TypeError)
"""What from_pretrained raises for missing files, bad configs, absent optional packages, OOM."""


def quantization(settings: PyTorchConfig) -> str | None:
    """Return ``bitsandbytes_8bit``, ``bitsandbytes_4bit`` or None."""
    if settings.load_in_8bit:
        return "bitsandbytes_8bit"
    if settings.load_in_4bit:
        return "bitsandbytes_4bit"
    return None


def device_map(settings: PyTorchConfig, device: str) -> str | dict[str, str] | None:
    """Return the device_map handed to ``from_pretrained``.

    None means: load on the CPU, then move the whole model with ``.to(device)``, which needs no
    accelerate. bitsandbytes quantises while placing the weights, so it always gets a map.
    """
    if settings.device_map is not None:
        return settings.device_map
    if quantization(settings):
        return {"": device}
    return None


def load_model(config: ExperimentConfig, device: str, pad_token_id: int) -> Any:
    """Load the model in eval mode on ``device``, with a LoRA adapter and compilation if asked.

    Raises:
        BackendError: transformers, torch or peft failed to load it.

    """
    settings = config.pytorch or PyTorchConfig()
    model = _from_pretrained(config, settings, device)
    if device_map(settings, device) is None:
        model.to(device)
    model.eval()
    model.generation_config = _neutral_generation_config(model, pad_token_id)
    model = _apply_lora(config, model)
    if settings.torch_compile:
        import torch

        # generate() calls the module, which calls self.forward: compiling forward keeps
        # generate's own logic (cache, stopping) in Python.
        model.forward = torch.compile(model.forward)
    return model


def _from_pretrained(config: ExperimentConfig, settings: PyTorchConfig, device: str) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            model_location(config), **from_pretrained_kwargs(config, settings, device)
        )
    except _LOAD_ERRORS as error:
        raise BackendError(
            f"loading model '{config.model}' failed: {error}",
            fix="check that the model directory or cache entry is complete and that its "
            "architecture is supported by this transformers version",
        ) from error


def from_pretrained_kwargs(
    config: ExperimentConfig, settings: PyTorchConfig, device: str
) -> dict[str, Any]:
    """Keyword arguments for ``AutoModelForCausalLM.from_pretrained``."""
    import torch
    import transformers

    # transformers 4.56 renamed torch_dtype to dtype; older versions ignore "dtype" silently.
    new_name = _version_at_least(transformers.__version__, 4, 56)
    kwargs = _offline_kwargs(config)
    kwargs["dtype" if new_name else "torch_dtype"] = getattr(torch, TORCH_DTYPES[config.precision])
    if settings.attn_implementation:
        kwargs["attn_implementation"] = settings.attn_implementation
    if quantization(settings):
        kwargs["quantization_config"] = _bitsandbytes_config(config, settings)
    placement = device_map(settings, device)
    if placement is not None:
        kwargs["device_map"] = placement
    return kwargs


def model_location(config: ExperimentConfig) -> str:
    """What ``from_pretrained`` opens: the absolute model directory or cache snapshot.

    Never the bare name: transformers would take ``org/name`` as a folder of the working
    directory when one exists there, and load it in place of the pinned commit.
    """
    return str(models.directory(config.model, config.load_revision))


def _offline_kwargs(config: ExperimentConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"local_files_only": True}
    if config.load_revision:
        kwargs["revision"] = config.load_revision
    return kwargs


def _bitsandbytes_config(config: ExperimentConfig, settings: PyTorchConfig) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    if settings.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)  # type: ignore[no-untyped-call]
    compute_dtype = getattr(torch, TORCH_DTYPES[config.precision])
    return BitsAndBytesConfig(  # type: ignore[no-untyped-call]
        load_in_4bit=True, bnb_4bit_compute_dtype=compute_dtype
    )


def _neutral_generation_config(model: Any, pad_token_id: int) -> Any:
    # A model's generation_config may carry sampling defaults (temperature 0.6, top_p 0.9, ...)
    # that generate() would quietly merge in; keep only its special token ids so the decoding
    # is exactly what the experiment config says.
    from transformers import GenerationConfig

    source = model.generation_config
    return GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=source.bos_token_id,
        eos_token_id=source.eos_token_id,
        pad_token_id=pad_token_id,
    )


def _apply_lora(config: ExperimentConfig, model: Any) -> Any:
    if config.lora is None:
        return model
    peft = importlib.import_module("peft")  # optional; preflight reports it missing
    try:
        adapted = peft.PeftModel.from_pretrained(model, config.lora.adapter)
    except (OSError, ValueError) as error:
        raise BackendError(
            f"loading LoRA adapter '{config.lora.adapter}' failed: {error}",
            fix="point lora.adapter at a local adapter directory or a cached adapter id",
        ) from error
    return adapted.merge_and_unload() if config.lora.merged else adapted


def tensor_bytes(model: Any) -> int:
    """Bytes held by the model's parameters and buffers."""
    tensors = [*model.parameters(), *model.buffers()]
    return int(sum(tensor.numel() * tensor.element_size() for tensor in tensors))


def _version_at_least(version: str, major: int, minor: int) -> bool:
    parts = version.split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (IndexError, ValueError):
        return True
