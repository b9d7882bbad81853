"""Copies of the fake ``tensorrt_llm`` laid out as particular TensorRT-LLM releases.

The fake is one source tree (tests/fakes/tensorrt_llm); what differs between releases is decided
in its ``_release`` module from the ``version.py`` that :func:`install` writes, and the files a
release lacks are deleted from the copy. Any version may be installed (a 0.x one lays out the
top-level ``LLM`` as the TensorRT-engine one, without ``_tensorrt_engine``); ``LAYOUTS`` lists
those the fake models on purpose.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent / "tensorrt_llm"

LAYOUTS = {
    "1.0.0": ("TensorRT-engine LLM in tensorrt_llm._tensorrt_engine, top-level LLM the PyTorch "
              "runtime; run-time limits above an engine's built ones raise (the fake's 1.0 "
              "docstrings; 1.0.0rc4 sampling_params.py at index commit 000a01de)"),
    "1.2.1": ("as 1.0.0, but the engine path logs a legacy warning once and clamps run-time "
              "limits above the built ones with a warning (both unverified for 1.2.1: the "
              "clamp is in a 1.1-era llm_args.py later than 1.1.0, whose published trtllm-serve "
              "log still shows the ValueError; serve.py from index commit 00209af)"),
    "1.4.0rc1": ("after the July 2026 removal: no _tensorrt_engine, builder.py or "
                 "llmapi.BuildConfig; LLM(backend='tensorrt') raises ValueError; trtllm-serve "
                 "--backend pytorch only (PR #15918, docs/source/legacy/"
                 "tensorrt-backend-removal.md, post-removal llm_args.py at index commit 0004396)"),
}
"""The layouts the fake models: version -> what it looks like and where that comes from."""


def _release() -> ModuleType:
    """The fake's ``_release`` module, loaded from its file without importing the package."""
    spec = importlib.util.spec_from_file_location("_fake_tensorrt_llm_release",
                                                  PACKAGE / "_release.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def install(root: Path, version: str) -> Path:
    """Copy the fake package under ``root`` as release ``version`` lays it out.

    Args:
        root: a directory to hold ``tensorrt_llm`` (created; must not hold one already).
        version: the release, written to the copy's ``version.py``.

    Returns:
        The directory to put first on ``sys.path`` / ``PYTHONPATH`` (``root``).

    """
    package = root / "tensorrt_llm"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "version.py").write_text(f'__version__ = "{version}"\n')
    for relative in _release().removed_files(version):
        (package / relative).unlink()
    return root
