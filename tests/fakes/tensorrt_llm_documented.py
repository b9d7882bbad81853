"""TensorRT-LLM's documented signatures for everything llem calls, as stubs without bodies.

Copied from NVIDIA/TensorRT-LLM (0.17-1.0 for the TensorRT-engine path; the PyTorch runtime's
from the 1.1-era and post-removal sources named on each stub); each stub names its source file.
The tests compare the fake ``tensorrt_llm`` (and, where installed, the real one) against these:
parameter names, kinds and defaults of what llem relies on, and every keyword llem passes.

Parameters after the ones llem uses differ between versions (``generate`` gained
``scheduling_params`` and others); ``RELIED`` lists, per stub, the parameters whose name, kind
and default must match.
"""

from typing import Any


class LLM:
    """``tensorrt_llm/llmapi/llm.py``: ``_TrtLLM``, exported as
    ``tensorrt_llm._tensorrt_engine.LLM`` in 1.0 and as ``tensorrt_llm.LLM`` in 0.17-0.21, with
    ``generate``/``generate_async`` from ``BaseLLM`` in the same file."""

    def __init__(self,
                 model: str,
                 tokenizer: str | None = None,
                 tokenizer_mode: str = "auto",
                 skip_tokenizer_init: bool = False,
                 trust_remote_code: bool = False,
                 tensor_parallel_size: int = 1,
                 dtype: str = "auto",
                 revision: str | None = None,
                 tokenizer_revision: str | None = None,
                 **kwargs: Any) -> None: ...

    def generate(self,
                 inputs: Any,
                 sampling_params: Any = None,
                 use_tqdm: bool = True,
                 lora_request: Any = None,
                 prompt_adapter_request: Any = None,
                 kv_cache_retention_config: Any = None,
                 disaggregated_params: Any = None) -> Any: ...

    def generate_async(self,
                       inputs: Any,
                       sampling_params: Any = None,
                       lora_request: Any = None,
                       prompt_adapter_request: Any = None,
                       streaming: bool = False,
                       kv_cache_retention_config: Any = None,
                       disaggregated_params: Any = None) -> Any: ...

    def save(self, engine_dir: str) -> None: ...

    def shutdown(self) -> None: ...


TRT_LLM_ARGS_PASSED = ("pipeline_parallel_size", "build_config", "kv_cache_config",
                       "quant_config", "max_batch_size", "max_num_tokens", "max_beam_width")
"""``tensorrt_llm/llmapi/llm_args.py``: ``TrtLlmArgs``/``BaseLlmArgs`` fields llem passes to
``LLM(...)`` as keyword arguments (validated there; unknown ones are a ValueError)."""


class TorchLLM:
    """``tensorrt_llm/llmapi/llm.py``: the public ``LLM`` of the PyTorch runtime ("Bases:
    _TorchLLM" in the 1.1.0rc2.post1, 1.3.0rc7/rc24 and latest ``llm-api/reference.html``),
    exported as ``tensorrt_llm.LLM`` from 1.0; ``__init__`` is ``BaseLLM``'s (``llm.py`` at index
    commit 4c05a74, 1.1-era), ``generate``/``generate_async``/``shutdown`` too."""

    __init__ = LLM.__init__  # BaseLLM.__init__: the engine LLM's too

    def generate(self,
                 inputs: Any,
                 sampling_params: Any = None,
                 use_tqdm: bool = True) -> Any: ...

    def generate_async(self,
                       inputs: Any,
                       sampling_params: Any = None,
                       lora_request: Any = None,
                       prompt_adapter_request: Any = None,
                       streaming: bool = False) -> Any: ...

    def shutdown(self) -> None: ...


TORCH_LLM_ARGS_PASSED = ("pipeline_parallel_size", "max_batch_size", "max_num_tokens",
                         "max_seq_len", "max_beam_width", "kv_cache_config", "cuda_graph_config",
                         "attn_backend", "disable_overlap_scheduler")
"""``tensorrt_llm/llmapi/llm_args.py``: ``TorchLlmArgs``/``BaseLlmArgs`` fields llem passes to the
PyTorch runtime's ``LLM(...)`` as keyword arguments (besides ``tensor_parallel_size`` and
``dtype``; unknown ones are a ValueError, ``BaseLLM.__init__``). Present in the 1.1-era
``llm_args.py`` (index id 1090804222) and the post-removal one (index commit 0004396)."""

TORCH_LLM_ARGS_DEFAULTS = {"max_batch_size": 2048, "max_num_tokens": 8192, "max_input_len": 1024,
                           "max_beam_width": 1, "attn_backend": "TRTLLM",
                           "disable_overlap_scheduler": False}
"""What ``llm.args`` holds for these when not passed: post-removal ``BaseLlmArgs`` and
``TorchLlmArgs`` defaults (index commit 0004396; None is normalised to the default). The 1.1-era
args copy ``BuildConfig``'s limits back: the same values if BuildConfig's defaults are those of
``BuildConfig`` below. ``max_seq_len`` defaults to None and is resolved from the model
(unverified when, so not listed)."""


def CudaGraphConfig(*,
                    batch_sizes: list[int] | None = None,
                    max_batch_size: int = 0,
                    enable_padding: bool = False) -> None:
    """``tensorrt_llm/llmapi/llm_args.py``: ``class CudaGraphConfig(StrictBaseModel)`` (1.1-era;
    after the removal an alias of ``DecodeCudaGraphConfig``, which adds ``mode="decode"``).
    ``TorchLlmArgs.cuda_graph_config`` defaults to ``CudaGraphConfig()``, whose validator makes
    ``max_batch_size`` 128 and generates ``batch_sizes``; None turns CUDA graphs off."""


def BuildConfig(max_input_len: int = 1024,
                max_seq_len: int | None = None,
                opt_batch_size: int = 8,
                max_batch_size: int = 2048,
                max_beam_width: int = 1,
                max_num_tokens: int = 8192,
                opt_num_tokens: int | None = None) -> None:
    """``tensorrt_llm/builder.py``: ``@dataclass class BuildConfig`` (leading fields)."""


def KvCacheConfig(*,
                  enable_block_reuse: bool = True,
                  max_tokens: int | None = None,
                  free_gpu_memory_fraction: float | None = None) -> None:
    """``tensorrt_llm/llmapi/llm_args.py``: ``class KvCacheConfig(StrictBaseModel)`` (pydantic,
    so keyword-only). The default of ``free_gpu_memory_fraction`` moved from None (the C++
    runtime's 0.9) to 0.9 across versions; llem passes it only when the config sets it.
    ``enable_block_reuse`` (default True: reuse KV blocks of prefixes seen before, across
    requests) is a run-time executor setting that llem always passes (False unless the study
    sets ``tensorrt.enable_block_reuse``). Versions whose LLM API arbitrates build options
    (``_ConfigArbitrator`` in ``llm_args.py``/``llm_utils.py``) also claim
    ``plugin_config.use_paged_context_fmha=True`` for it when building: the engine changes."""


def QuantConfig(quant_algo: Any = None,
                kv_cache_quant_algo: Any = None) -> None:
    """``tensorrt_llm/models/modeling_utils.py``: ``@dataclass class QuantConfig`` (exported by
    ``tensorrt_llm.llmapi``)."""


QUANT_ALGO_MEMBERS = ("FP8", "W8A8_SQ_PER_CHANNEL", "W8A16", "W4A16", "W4A16_AWQ")
"""``tensorrt_llm/quantization/mode.py``: ``QuantAlgo`` members llem selects."""


def SamplingParams(*,
                   end_id: int | None = None,
                   pad_id: int | None = None,
                   max_tokens: int = 32,
                   n: int = 1,
                   best_of: int | None = None,
                   use_beam_search: bool = False,
                   top_k: int | None = None,
                   top_p: float | None = None,
                   seed: int | None = None,
                   temperature: float | None = None,
                   min_tokens: int | None = None,
                   ignore_eos: bool = False,
                   detokenize: bool = True) -> None:
    """``tensorrt_llm/sampling_params.py``: ``@dataclass(slots=True, kw_only=True) class
    SamplingParams`` (the fields llem passes)."""


RELIED = {
    "LLM.__init__": ("model", "tokenizer", "tensor_parallel_size", "dtype", "kwargs"),
    "LLM.generate": ("inputs", "sampling_params", "use_tqdm"),
    "LLM.generate_async": ("inputs", "sampling_params", "streaming"),
    "LLM.save": ("engine_dir",),
    "LLM.shutdown": (),
    "TorchLLM.__init__": ("model", "tokenizer", "tensor_parallel_size", "dtype", "kwargs"),
    "TorchLLM.generate": ("inputs", "sampling_params", "use_tqdm"),
    "TorchLLM.generate_async": ("inputs", "sampling_params", "streaming"),
    "TorchLLM.shutdown": (),
    "CudaGraphConfig": ("batch_sizes", "max_batch_size", "enable_padding"),
    "BuildConfig": ("max_input_len", "max_seq_len", "max_batch_size", "max_beam_width",
                    "max_num_tokens"),
    "KvCacheConfig": ("free_gpu_memory_fraction", "enable_block_reuse"),
    "QuantConfig": ("quant_algo", "kv_cache_quant_algo"),
    "SamplingParams": ("end_id", "pad_id", "max_tokens", "n", "best_of", "use_beam_search",
                       "top_k", "top_p", "seed", "temperature", "min_tokens", "ignore_eos",
                       "detokenize"),
}
"""Per stub, the parameters whose name, kind and default llem relies on."""

VERSION_DEPENDENT_DEFAULTS = {("KvCacheConfig", "free_gpu_memory_fraction")}
"""Defaults that differ between released versions: only the name is checked against them."""


SERVE_OPTIONS = ("--tokenizer", "--host", "--port", "--backend", "--max_beam_width",
                 "--max_batch_size", "--max_num_tokens", "--max_seq_len", "--tp_size",
                 "--pp_size", "--extra_llm_api_options")
"""``tensorrt_llm/commands/serve.py``: options of ``trtllm-serve serve MODEL`` that llem passes
(1.0-1.2; ``--backend`` takes ``pytorch`` (the default), ``tensorrt``, ``_autodeploy``; after
the removal ``pytorch`` only, per the migration guide, the post-removal serve.py unread)."""

COMPLETION_REQUEST_FIELDS = (
    "model", "prompt", "best_of", "max_tokens", "n", "seed", "stream", "stream_options",
    "temperature", "top_p", "use_beam_search", "top_k", "ignore_eos", "min_tokens",
    "detokenize")
"""``tensorrt_llm/serve/openai_protocol.py``: ``CompletionRequest`` fields llem sends (the model
forbids unknown fields). With ``detokenize`` False each streamed choice carries ``token_ids``
(``postprocess_handlers.completion_stream_post_processor``)."""
