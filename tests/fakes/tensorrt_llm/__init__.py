"""A fake ``tensorrt_llm`` for tests: the surface of TensorRT-LLM 1.0's LLM API that llem uses.

Put ``tests/fakes`` first on ``sys.path`` to import it as ``tensorrt_llm``. As in 1.0, the
top-level ``LLM`` is the PyTorch-backend one (which this fake refuses to run) and the
TensorRT-engine ``LLM`` lives in ``tensorrt_llm._tensorrt_engine``.

``__version__`` comes from ``FAKE_TENSORRT_LLM_VERSION``, else ``version.py`` (1.0.0, which
llem reads without importing the package); tests may also set the module attribute.
Counters of builds and loads live in :mod:`tensorrt_llm.llmapi.llm`.
"""

import os

from tensorrt_llm import llmapi
from tensorrt_llm.llmapi.llm import _TorchLLM as LLM
from tensorrt_llm.sampling_params import SamplingParams
from tensorrt_llm.version import __version__ as _built_version

__version__ = os.environ.get("FAKE_TENSORRT_LLM_VERSION", _built_version)

__all__ = ["LLM", "SamplingParams", "__version__", "llmapi"]
