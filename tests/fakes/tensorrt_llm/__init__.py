"""A fake ``tensorrt_llm`` for tests: the surface of TensorRT-LLM's LLM API that llem uses.

Put ``tests/fakes`` first on ``sys.path`` to import it as ``tensorrt_llm`` (TensorRT-LLM
1.0.0's layout); ``tests/fakes/tensorrt_llm_layouts.py`` installs a copy laid out as another
release (1.2.1, or 1.4.0rc1 after the TensorRT-engine runtime was removed). What differs
between releases is decided in :mod:`tensorrt_llm._release` from ``version.py``.

From 1.0 the top-level ``LLM`` is the PyTorch runtime (``_TorchLLM``) and the TensorRT-engine
``LLM`` lives in ``tensorrt_llm._tensorrt_engine`` until the removal; in 0.x the top-level
``LLM`` is the engine one.

``__version__`` comes from ``FAKE_TENSORRT_LLM_VERSION``, else ``version.py`` (which llem
reads without importing the package); tests may also set the module attribute, which changes
only the version reported, not the layout. Counters of builds and loads live in
:mod:`tensorrt_llm.llmapi.llm`.
"""

import os

from tensorrt_llm import llmapi
from tensorrt_llm.llmapi import LLM
from tensorrt_llm.sampling_params import SamplingParams
from tensorrt_llm.version import __version__ as _built_version

__version__ = os.environ.get("FAKE_TENSORRT_LLM_VERSION", _built_version)

__all__ = ["LLM", "SamplingParams", "__version__", "llmapi"]
