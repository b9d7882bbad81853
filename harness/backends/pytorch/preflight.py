"""What the PyTorch backend needs before it can load: libraries, model files, device.

Everything here is read-only and imports heavy libraries only to check that they import. Each
check returns a list of problems (``message`` plus ``fix``, as :class:`PreflightError` prints
them) so that preflight can report all of them at once.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Literal

from harness.backends.pytorch.loading import quantization
from harness.errors import PreflightError
from harness.schema.config import ExperimentConfig, PyTorchConfig

ModelSource = Literal["local_directory", "hf_cache"]

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
"""A model directory or cache snapshot needs config.json and one of these."""

_INSTALL_FIX = "install the pytorch extra (pip install 'llem[pytorch]') or run in the pytorch image"
_FLASH_FIX = "pip install flash-attn, or use attn_implementation sdpa"


def problem(message: str, fix: str) -> str:
    """Format one preflight problem the way :class:`PreflightError` prints it."""
    return str(PreflightError(message, fix=fix))


def resolve_model(model: str, revision: str | None) -> ModelSource:
    """Find ``model`` without the network: a local directory or the Hugging Face cache.

    Raises:
        PreflightError: the model is not available offline, with what to do about it.

    """
    path = Path(model).expanduser()
    if path.is_dir():
        _check_model_dir(path)
        return "local_directory"
    if _looks_like_path(model):
        raise PreflightError(
            f"model directory {path} does not exist",
            fix=(
                "point model: at a directory holding config.json and the weights (a tiny test "
                "model: python -m harness.tiny_model DIR), or at a Hugging Face id in the "
                "local cache"
            ),
        )
    if not _in_hf_cache(model, revision):
        at = f" at revision {revision}" if revision else ""
        raise PreflightError(
            f"model '{model}'{at} is neither a local directory nor in the Hugging Face cache, "
            "and runs never download",
            fix=(
                f"download it on the host first (hf download {model}) into the cache that is "
                "mounted into the run (HF_HOME), or point model: at a local directory"
            ),
        )
    return "hf_cache"


def _check_model_dir(path: Path) -> None:
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        missing.append("weights (" + " or ".join(WEIGHT_FILES[::2]) + ")")
    if missing:
        raise PreflightError(
            f"model directory {path} has no {' and no '.join(missing)}",
            fix="save the model there with save_pretrained(DIR), or point model: elsewhere",
        )


def _looks_like_path(model: str) -> bool:
    # A Hugging Face id is "name" or "org/name"; anything else is meant as a path.
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model


def _in_hf_cache(model: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> bool:
        try:
            found = try_to_load_from_cache(model, filename, revision=revision)
        except ValueError:  # not a valid repository id
            return False
        return isinstance(found, str)

    return cached("config.json") and any(cached(name) for name in WEIGHT_FILES)


def importable(module: str) -> bool:
    """Return whether ``module`` imports."""
    return _import_error(module) is None


def _import_error(module: str) -> str | None:
    try:
        importlib.import_module(module)
    except Exception as error:  # a broken install fails in many ways; each is this problem
        return str(error) or type(error).__name__
    return None


def library_problems(config: ExperimentConfig, settings: PyTorchConfig) -> list[str]:
    """Return every library this configuration needs that does not import."""
    quantised = quantization(settings) is not None
    needed = [
        ("torch", "the pytorch backend", _INSTALL_FIX),
        ("transformers", "the pytorch backend", _INSTALL_FIX),
    ]
    if quantised:
        needed.append(("bitsandbytes", "pytorch.load_in_8bit/4bit", "pip install bitsandbytes"))
    if settings.device_map is not None or quantised:
        needed.append(("accelerate", "a device_map", "pip install accelerate"))
    if settings.attn_implementation == "flash_attention_2":
        needed.append(("flash_attn", "attn_implementation flash_attention_2", _FLASH_FIX))
    if config.lora is not None:
        needed.append(("peft", "a lora: adapter", "pip install peft"))
    problems = []
    for module, needed_by, fix in needed:
        error = _import_error(module)
        if error is not None:
            problems.append(
                problem(f"{needed_by} needs {module}, which fails to import: {error}", fix)
            )
    return problems


def device_problems(device: str, settings: PyTorchConfig) -> list[str]:
    """Return problems with the target device (torch must import)."""
    if device == "cpu":
        return _cpu_problems(settings)
    if not device.startswith("cuda"):
        return [problem(f"device '{device}' is not supported", "use 'cpu' or 'cuda:N'")]
    return _cuda_problems(device)


def _cpu_problems(settings: PyTorchConfig) -> list[str]:
    problems = []
    if quantization(settings) is not None:
        problems.append(
            problem(
                "bitsandbytes quantisation (load_in_8bit/4bit) needs a CUDA GPU, not cpu",
                "run on a GPU, or remove pytorch.load_in_8bit/load_in_4bit",
            )
        )
    if settings.attn_implementation == "flash_attention_2":
        problems.append(
            problem("flash_attention_2 needs a CUDA GPU, not cpu", "use sdpa or eager on cpu")
        )
    return problems


def _cuda_problems(device: str) -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return [
            problem(
                f"device {device} was asked for, but torch {torch.__version__} sees no CUDA GPU",
                "make the GPUs visible to the run (NVIDIA container runtime, "
                "CUDA_VISIBLE_DEVICES) or run on cpu",
            )
        ]
    _, _, index_text = device.partition(":")
    index = int(index_text) if index_text.isdigit() else 0
    count = torch.cuda.device_count()
    if index >= count:
        return [
            problem(
                f"device {device} does not exist ({count} CUDA devices visible)",
                f"use cuda:0 to cuda:{count - 1}",
            )
        ]
    return []
