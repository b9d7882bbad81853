"""Which TensorRT-LLM runtimes the installed package carries, read without importing it.

TensorRT-LLM has shipped two runtimes behind one ``LLM`` name:

- the TensorRT-engine path, which llem's tensorrt backend runs (build an engine, cache it, load
  it): ``tensorrt_llm.LLM`` in 0.17-0.21, ``tensorrt_llm._tensorrt_engine.LLM`` from 1.0 (where
  the top-level ``LLM`` became the PyTorch runtime), marked legacy in 1.1-1.2, and removed in
  July 2026 (its migration guide, ``docs/source/legacy/tensorrt-backend-removal.md``: no
  ``_tensorrt_engine``, ``TrtLlmArgs``, ``BuildConfig`` or ``trtllm-build``; the 1.3.0 release
  candidates after it and every later image carry the PyTorch runtime only);
- the PyTorch runtime, the top-level ``tensorrt_llm.LLM`` from 1.0.

Importing ``tensorrt_llm`` loads CUDA libraries and probes the GPU, which nothing in the harness
may do before the engine starts; this module looks at the package's files instead: its version
(package metadata, else its ``version.py``) and whether ``_tensorrt_engine`` is there. The
backend never switches runtime on its own: a study that asks for the engine runtime on a
package without it fails in preflight, naming the version found.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

ENGINE_MODULE = "tensorrt_llm._tensorrt_engine"
"""Where the TensorRT-engine ``LLM`` lives from 1.0 until its removal."""

REMOVAL_NOTE = ("TensorRT-LLM removed its TensorRT-engine runtime in July 2026 (releases after "
                "1.2 carry its PyTorch runtime only)")

ENGINE_FIX = ("run in the llem/tensorrt image, which pins TensorRT-LLM 1.2.1 (images/README.md), "
              "or build it on another release that still has the engine runtime (1.2.x or "
              "earlier: llem images build tensorrt --base "
              "nvcr.io/nvidia/tensorrt-llm/release:<version>), or set tensorrt.runtime: "
              "pytorch to run TensorRT-LLM's PyTorch runtime instead")


@dataclass(frozen=True)
class Installed:
    """What the installed ``tensorrt_llm`` offers.

    Attributes:
        version: its version (None when neither metadata nor ``version.py`` says).
        engine_module: the module whose ``LLM`` is the TensorRT-engine path, or None when the
            package has no engine runtime.
        pytorch: whether the top-level ``LLM`` is the PyTorch runtime (1.0 and later).
    """

    version: str | None
    engine_module: str | None
    pytorch: bool

    @property
    def engine(self) -> bool:
        """Whether the TensorRT-engine runtime is there."""
        return self.engine_module is not None


def installed() -> Installed | None:
    """The installed package's runtimes, or None when ``tensorrt_llm`` is not installed."""
    spec = importlib.util.find_spec("tensorrt_llm")  # the top-level package: not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    return layout(root, package_version(root))


def layout(root: Path, version: str | None) -> Installed:
    """The runtimes of the package in ``root`` of this version."""
    major = _major(version)
    has_engine_module = (root / "_tensorrt_engine").is_dir() or (
        root / "_tensorrt_engine.py").is_file()
    if has_engine_module:
        return Installed(version, ENGINE_MODULE, pytorch=True)
    if major is not None and major < 1:
        # 0.17-0.21: the top-level LLM is the engine path
        return Installed(version, "tensorrt_llm", pytorch=False)
    return Installed(version, None, pytorch=True)


def package_version(root: Path) -> str | None:
    """The version of the package in ``root``: its metadata, else its ``version.py``."""
    for name in ("tensorrt_llm", "tensorrt-llm"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        text = (root / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    found = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
    return found.group(1) if found else None


PYTORCH_FIX = ("set tensorrt.runtime: engine, or run in an image with TensorRT-LLM 1.0 or "
               "later (the llem/tensorrt image: images/README.md)")


def pytorch_missing_message(found: Installed) -> str:
    """The problem text when the PyTorch runtime is asked for and absent (0.x releases)."""
    return (f"tensorrt.runtime is pytorch, but the installed tensorrt_llm "
            f"{found.version or '(version unknown)'} has no PyTorch runtime: its top-level LLM "
            "is the TensorRT-engine path (TensorRT-LLM 0.17-0.21)")


def engine_missing_message(found: Installed) -> str:
    """The problem text when the engine runtime is asked for and absent."""
    return (f"the tensorrt backend runs TensorRT engines, but the installed tensorrt_llm "
            f"{found.version or '(version unknown)'} has no TensorRT-engine runtime (no "
            f"{ENGINE_MODULE}): {REMOVAL_NOTE}")


def _major(version: str | None) -> int | None:
    found = re.match(r"\s*(\d+)\.", version or "")
    return int(found.group(1)) if found else None
