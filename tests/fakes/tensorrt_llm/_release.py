"""Which TensorRT-LLM release this copy of the fake lays out (fake-only; no such module upstream).

One source tree serves every layout (``tests/fakes/tensorrt_llm_layouts.py`` installs a copy
and writes its ``version.py``). Whatever differs between releases is decided here, from
``tensorrt_llm.version.__version__``: not the top-level ``__version__``, which tests may change
to alter only the version the package reports.

The release boundaries, and where each comes from:

- 0.17-0.21: the top-level ``LLM`` is the TensorRT-engine one; there is no ``_tensorrt_engine``
  (the fake's 1.0 docstrings; ``_tensorrt_engine`` arrived with 1.0).
- 1.0: ``tensorrt_llm._tensorrt_engine.LLM`` is the engine path and the top-level ``LLM`` the
  PyTorch runtime; run-time limits above an engine's built ones raise.
- 1.1-1.2: as 1.0, but the engine path logs a legacy warning (unverified: neither the warning
  nor its text was found in a stored 1.1/1.2 source).
- 1.2: run-time limits above the built ones are clamped with a warning instead of raising. A
  published trtllm-serve log of 1.1.0 shows it still raising (TrtLlmArgs' "max_batch_size
  [2048] is greater than build_config.max_batch_size [64] in build_config"); the clamp is in a
  later 1.1-era ``llm_args.py``, so it is taken to ship from 1.2 (1.2.1 itself unverified).
- 1.3 and later: the TensorRT-engine runtime is gone (NVIDIA/TensorRT-LLM PR #15918 and
  ``docs/source/legacy/tensorrt-backend-removal.md``, July 2026: no ``_tensorrt_engine``, no
  ``BuildConfig``, ``LLM(backend="tensorrt")`` raises ValueError). Which 1.3 release candidate
  first shipped without it is unknown; every 1.3 version is treated as post-removal.
"""

import re

_ENGINE_TOP_LEVEL_BEFORE = (1, 0)
_LEGACY_WARNING_FROM = (1, 1)
_CLAMPS_FROM = (1, 2)
_REMOVED_FROM = (1, 3)


def parse(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a version string such as ``1.2.1`` or ``1.4.0rc1``."""
    found = re.match(r"\s*(\d+)\.(\d+)", version)
    if found is None:
        raise ValueError(f"not a TensorRT-LLM version: {version!r}")
    return int(found.group(1)), int(found.group(2))


def current() -> str:
    """The version this copy of the package was installed as (its ``version.py``)."""
    from tensorrt_llm import version

    return str(version.__version__)


def engine_is_top_level(version: str | None = None) -> bool:
    """Whether the top-level ``LLM`` is the TensorRT-engine one (0.x)."""
    return parse(version or current()) < _ENGINE_TOP_LEVEL_BEFORE


def has_engine_runtime(version: str | None = None) -> bool:
    """Whether the release still carries the TensorRT-engine runtime (before the removal)."""
    return parse(version or current()) < _REMOVED_FROM


def has_engine_module(version: str | None = None) -> bool:
    """Whether ``tensorrt_llm._tensorrt_engine`` exists (1.0 until the removal)."""
    return has_engine_runtime(version) and not engine_is_top_level(version)


def clamps_runtime_limits(version: str | None = None) -> bool:
    """Whether the engine path clamps run-time limits above the built ones (1.2, unverified)
    instead of raising (1.0 and 1.1.0)."""
    return parse(version or current()) >= _CLAMPS_FROM


def warns_legacy_engine(version: str | None = None) -> bool:
    """Whether the engine path logs a legacy warning when constructed (1.1-1.2, unverified)."""
    return parse(version or current()) >= _LEGACY_WARNING_FROM and has_engine_runtime(version)


def removed_files(version: str) -> tuple[str, ...]:
    """Files of the fake package (relative to it) that a release of ``version`` lacks."""
    if not has_engine_runtime(version):
        return ("_tensorrt_engine.py", "builder.py", "llmapi/_trt_llm.py")
    if engine_is_top_level(version):
        return ("_tensorrt_engine.py",)
    return ()


def greedy_implied_by_any_field(version: str | None = None) -> bool:
    """Whether ``SamplingParams`` reads greedy from any one field (``top_k == 1``,
    ``top_p == 0`` or ``temperature == 0``, or all three unset: ``params_imply_greedy_decoding``
    in a stored newer ``sampling_params.py``) rather than 1.0's rule (``top_k`` None or 1 and
    ``top_p`` None or 0). Which release changed it is unknown: the fake takes the newer rule from
    the removal on (1.3) and 1.0's before it."""
    return not has_engine_runtime(version)
