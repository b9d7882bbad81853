"""A fake of the part of vLLM that llem calls, for tests on machines without vLLM or a GPU.

Tests put ``tests/fakes`` first on ``sys.path`` so that ``import vllm`` finds this package. It
mirrors vLLM 0.10's module layout and behaviour where llem depends on it: ``LLM(**kwargs)``
builds a dataclass ``EngineArgs`` (an unknown argument is a ``TypeError``), ``SamplingParams``
validates like vLLM's, generation stops at EOS unless ``ignore_eos`` and never before
``min_tokens``, outputs come back in prompt order with ``metrics=None`` (V1), and the async
engine streams outputs over several event-loop steps. Automatic prefix caching is modelled
(``vllm._fake.PrefixCache``): repeated full KV blocks are served from cache, on by default as
in V1, and every ``RequestOutput`` reports its request's ``num_cached_tokens``. The resolved
``llm_engine.vllm_config`` carries vLLM's documented defaults. Every call llem makes is
recorded in ``vllm._fake.CALLS`` so tests can check it against the documented signatures
(``tests/fakes/vllm_documented.py``).
"""

from vllm.engine.arg_utils import AsyncEngineArgs, EngineArgs
from vllm.entrypoints.llm import LLM
from vllm.inputs import TokensPrompt
from vllm.outputs import CompletionOutput, RequestOutput
from vllm.sampling_params import RequestOutputKind, SamplingParams
from vllm.v1.engine.async_llm import AsyncLLM as AsyncLLMEngine

__version__ = "0.10.2+fake"

__all__ = [
    "LLM",
    "AsyncEngineArgs",
    "AsyncLLMEngine",
    "CompletionOutput",
    "EngineArgs",
    "RequestOutput",
    "RequestOutputKind",
    "SamplingParams",
    "TokensPrompt",
    "__version__",
]
