"""What every backend shares: decoding defaults, the preflight problem format, library checks.

Backends under ``harness/backends/<name>/`` never import each other; what two of them need
lives here (or, for a model checkpoint, in :mod:`harness.models`). Nothing here imports an
engine library.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from harness.errors import PreflightError
from harness.schema.config import DecoderConfig

DEFAULT_NUM_BEAMS = 4
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0
DEFAULT_TOP_K = 0
"""Sampling defaults when the config leaves them unset: the plain distribution (top_k 0 = off),
the same on every backend, rather than whatever a model's generation_config suggests."""


def sampling_values(decoder: DecoderConfig) -> dict[str, Any]:
    """Temperature, top_p and top_k of a sampling decoder, every unset value defaulted.

    top_k 0 means no top-k cut; a backend whose library spells "off" differently translates it.
    """
    return {
        "temperature": decoder.temperature or DEFAULT_TEMPERATURE,
        "top_p": decoder.top_p if decoder.top_p is not None else DEFAULT_TOP_P,
        "top_k": decoder.top_k if decoder.top_k is not None else DEFAULT_TOP_K,
    }


def num_beams(decoder: DecoderConfig) -> int:
    """Beams of a beam-search decoder (the config's, else :data:`DEFAULT_NUM_BEAMS`)."""
    return decoder.num_beams or DEFAULT_NUM_BEAMS


def problem(message: str, fix: str) -> str:
    """Format one preflight problem the way :class:`PreflightError` prints it."""
    return str(PreflightError(message, fix=fix))


def import_error(module: str) -> str | None:
    """Why ``module`` fails to import, or None when it imports."""
    try:
        importlib.import_module(module)
    except Exception as error:  # a broken install fails in many ways; each is this problem
        return str(error) or type(error).__name__
    return None


def importable(module: str) -> bool:
    """Return whether ``module`` imports."""
    return import_error(module) is None


def library_problem(module: str, backend: str, image: str) -> str | None:
    """A preflight problem when ``module`` is not installed, naming the image that has it.

    Only looked up (``find_spec``), never imported: importing an engine library can probe the
    GPU, and nothing may touch CUDA before the engine initialises.
    """
    if importlib.util.find_spec(module) is not None:
        return None
    return problem(
        f"backend '{backend}' needs {module}, which is not installed here",
        f"run it in the {image} image (llem run --runner docker; build it with "
        f"llem images build {image}), or install {module} in this environment",
    )
