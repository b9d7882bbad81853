"""What the PyTorch backend needs before it can load: libraries and device.

The model files are checked by :func:`harness.models.locate`, like every backend's.

Everything here is read-only and imports heavy libraries only to check that they import. Each
check returns a list of problems (``message`` plus ``fix``, as :class:`PreflightError` prints
them) so that preflight can report all of them at once.
"""

from __future__ import annotations

from harness.backends.common import import_error, problem
from harness.backends.pytorch.loading import quantization
from harness.schema.config import ExperimentConfig, PyTorchConfig

_INSTALL_FIX = "install the pytorch extra (pip install 'llem[pytorch]') or run in the pytorch image"
_FLASH_FIX = "pip install flash-attn, or use attn_implementation sdpa"


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
        error = import_error(module)
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
