"""TensorRT-LLM's PyTorch runtime (``tensorrt.runtime: pytorch``): its arguments and read-back.

The PyTorch runtime is the top-level ``tensorrt_llm.LLM`` from 1.0 (``TorchLlmArgs``), and the
only runtime TensorRT-LLM ships after it removed its TensorRT engines in July 2026. It loads the
Hugging Face checkpoint itself: there is no build, so no engine cache. What it runs with is
set through the same ``LLM(...)`` arguments the engine path uses at run time (limits,
parallelism, ``KvCacheConfig``), plus its own knobs:

- ``cuda_graph_config``: CUDA graphs for decode steps, on by default in every release read
  (a ``CudaGraphConfig()`` with batch sizes up to 128); ``None`` turns them off;
- ``attn_backend``: the attention kernels (``TRTLLM`` by default; ``FLASHINFER``, ``VANILLA``);
- ``disable_overlap_scheduler``: the host schedules step n+1 while the GPU runs step n unless
  this is True.

A knob the study leaves unset is not passed (TensorRT-LLM's default); every one is read back
from ``llm.args`` after the LLM is up and recorded (:func:`effective`), since defaults moved
between releases (``max_batch_size`` was None, then 2048; ``free_gpu_memory_fraction`` None,
then 0.9).

Limits. The PyTorch runtime checks a request's prompt against ``max_num_tokens`` (one step's
tokens) unless chunked prefill is on, and prompt + output against ``max_seq_len``; it does not
check ``max_input_len`` (1.x's ``_check_arguments``). :func:`workload_problems` checks the
workload's longest request against both before anything loads.

tensorrt_llm is imported inside functions only.
"""

from __future__ import annotations

import importlib
from typing import Any

from harness.backends.common import problem
from harness.backends.tensorrt import build
from harness.errors import BackendError
from harness.schema.config import ExperimentConfig

LIMITS = ("max_batch_size", "max_num_tokens", "max_seq_len", "max_input_len")
"""``tensorrt`` limits passed to the PyTorch LLM where the study sets them."""

DEFAULT_MAX_NUM_TOKENS = 8192
"""``BaseLlmArgs.max_num_tokens``'s default (1.0 and later)."""

DEFAULT_MAX_BATCH_SIZE = 2048
"""``max_batch_size``'s default (``BuildConfig``'s before the removal, ``BaseLlmArgs``' after)."""

DEFAULT_KNOBS = {"cuda_graph_config": "TensorRT-LLM's default: CudaGraphConfig() (on)",
                 "attn_backend": "TensorRT-LLM's default (TRTLLM)",
                 "disable_overlap_scheduler": "TensorRT-LLM's default (False)"}
"""What an unset knob is, in the record of what was asked (:func:`asked_knobs`)."""

OWN_LLM_ARGS = ("model", "tokenizer", "backend", "tensor_parallel_size",
                "pipeline_parallel_size", "dtype", "kv_cache_config", *LIMITS, "max_beam_width",
                "cuda_graph_config", "attn_backend", "disable_overlap_scheduler", "build_config")
"""``LLM(...)`` arguments llem derives from the config on this runtime (``build_config``: before
the engine runtime's removal its limits replace the run-time ones llem sets)."""

PASSTHROUGH_FIX = ("set the tensorrt: section instead (cuda_graphs, attention_backend, "
                   "overlap_scheduler, enable_block_reuse, kv_cache_free_gpu_memory_fraction, "
                   "the limits); passthrough_kwargs may only add LLM arguments")

READ_BACK = ("backend", "max_batch_size", "max_num_tokens", "max_seq_len", "max_input_len",
             "max_beam_width", "tensor_parallel_size", "pipeline_parallel_size", "dtype",
             "attn_backend", "disable_overlap_scheduler", "enable_chunked_prefill")
"""``llm.args`` fields recorded as the run's effective parameters."""


def limits(config: ExperimentConfig) -> dict[str, int]:
    """The limits the study sets, and the decoder's beam width (always)."""
    settings = build.settings_of(config)
    found = {name: getattr(settings, name) for name in LIMITS
             if getattr(settings, name) is not None}
    found["max_beam_width"] = build.beam_width(config.decoder)
    return found


def knobs(config: ExperimentConfig) -> dict[str, Any]:
    """The PyTorch runtime's own knobs the study sets, as JSON-able ``LLM`` argument values.

    ``cuda_graph_config`` is a mapping here (or None: off); :func:`llm_settings` makes it a
    ``CudaGraphConfig`` for the in-process LLM, and ``trtllm-serve``'s options file takes the
    mapping as it is.
    """
    settings = build.settings_of(config)
    found: dict[str, Any] = {}
    if settings.cuda_graphs is False:
        found["cuda_graph_config"] = None
    elif settings.cuda_graphs or settings.cuda_graph_batch_sizes is not None:
        sizes = settings.cuda_graph_batch_sizes
        found["cuda_graph_config"] = {} if sizes is None else {"batch_sizes": list(sizes)}
    if settings.attention_backend is not None:
        found["attn_backend"] = settings.attention_backend
    if settings.overlap_scheduler is not None:
        found["disable_overlap_scheduler"] = not settings.overlap_scheduler
    return found


def asked_knobs(config: ExperimentConfig) -> dict[str, Any]:
    """Every knob as asked: the study's value, or which default stands for it."""
    return {**DEFAULT_KNOBS, **knobs(config)}


def captured_batch_sizes(batch_sizes: list[int], max_batch_size: int | None,
                         max_num_tokens: int | None) -> list[int]:
    """The CUDA-graph batch sizes the runtime captures: those within both limits.

    The PyTorch runtime's model engine drops sizes above ``max_batch_size`` and
    ``max_num_tokens`` (``_filter_cuda_graph_batch_sizes``); a batch the runtime can never form
    gets no graph.
    """
    bound = min(max_batch_size or DEFAULT_MAX_BATCH_SIZE, max_num_tokens or DEFAULT_MAX_NUM_TOKENS)
    return [size for size in batch_sizes if size <= bound]


def llm_settings(config: ExperimentConfig) -> dict[str, Any]:
    """Keyword arguments for ``tensorrt_llm.LLM(model=<checkpoint>, ...)``."""
    llmapi = importlib.import_module("tensorrt_llm.llmapi")
    tensor_parallel, pipeline_parallel = build.parallel_sizes(config)
    kwargs: dict[str, Any] = {
        "tensor_parallel_size": tensor_parallel,
        "pipeline_parallel_size": pipeline_parallel,
        "dtype": build.dtype(config),
        **limits(config),
        "kv_cache_config": llmapi.KvCacheConfig(**build.kv_cache_values(config)),
        **knobs(config),
    }
    graphs = kwargs.get("cuda_graph_config")
    if isinstance(graphs, dict):
        kwargs["cuda_graph_config"] = llmapi.CudaGraphConfig(**graphs)
    return kwargs


def passthrough_error(config: ExperimentConfig) -> BackendError | None:
    """The error for ``passthrough_kwargs`` that name an argument llem sets, or None."""
    return build.passthrough_error(config, OWN_LLM_ARGS, PASSTHROUGH_FIX)


DEFAULT_MODEL_MAX_SEQ_LEN = 2048
"""What the PyTorch runtime takes when the checkpoint names no maximum length."""

_UNSCALED_ROPE = ("su", "longrope", "llama3", "yarn")
"""RoPE scaling types whose factor the runtime does not multiply into the maximum length."""


def model_max_seq_len(checkpoint: dict[str, Any]) -> int:
    """The longest sequence the PyTorch runtime lets the model hold, from its ``config.json``.

    As TensorRT-LLM infers it (``infer_max_seq_len``): ``max_position_embeddings`` (else the
    ``text_config``'s, else 2,048), times the RoPE scaling factor unless the scaling type is one
    that extends the context itself (su, longrope, llama3, yarn). A ``max_seq_len`` above it is
    lowered to it, with a warning.
    """
    text = checkpoint.get("text_config")
    positions = checkpoint.get("max_position_embeddings")
    if not isinstance(positions, int) and isinstance(text, dict):
        positions = text.get("max_position_embeddings")
    if not isinstance(positions, int):
        return DEFAULT_MODEL_MAX_SEQ_LEN
    rope = checkpoint.get("rope_scaling")
    if isinstance(rope, dict):
        kind = rope.get("type", rope.get("rope_type"))
        factor = rope.get("factor")
        if kind not in _UNSCALED_ROPE and isinstance(factor, int | float) and factor > 1:
            positions = int(positions * factor)
    return positions


def workload_problems(config: ExperimentConfig, model_limit: int | None) -> list[str]:
    """Limits the workload's longest request would break, and CUDA graphs that cannot be used.

    Args:
        config: the experiment.
        model_limit: :func:`model_max_seq_len` of the checkpoint (None when unreadable).

    A request whose prompt + output exceeds the sequence limit is not refused by the PyTorch
    runtime: its output is cut short with a warning, so it is refused here. The limit is
    ``tensorrt.max_seq_len`` where set, lowered to the model's, which is also what an unset one
    becomes.
    """
    settings = build.settings_of(config)
    prompt, output = build.workload_lengths(config)
    problems = []
    sizes = settings.cuda_graph_batch_sizes
    if sizes is not None:
        kept = captured_batch_sizes(sizes, settings.max_batch_size, settings.max_num_tokens)
        if kept and min(kept) > config.n:
            problems.append(problem(
                f"tensorrt.cuda_graph_batch_sizes {sorted(sizes)} are all above the "
                f"{config.n} requests of the workload; a graph replays only for a decode step "
                "of exactly its batch size, so no step would use one",
                f"include batch sizes of at most {config.n}, or remove "
                "cuda_graph_batch_sizes"))
        if len(kept) < len(sizes):
            problems.append(problem(
                f"tensorrt.cuda_graph_batch_sizes {sorted(sizes)} go above what a step can hold "
                "(max_batch_size and max_num_tokens); the PyTorch runtime captures no graph for "
                f"them, {'so CUDA graphs would be off' if not kept else f'only for {kept}'}",
                "keep the sizes within tensorrt.max_batch_size (and max_num_tokens), or raise "
                "the limits"))
    step_tokens = settings.max_num_tokens or DEFAULT_MAX_NUM_TOKENS
    chunked = bool(config.passthrough_kwargs.get("enable_chunked_prefill"))
    if not chunked and prompt > step_tokens:
        named = ("tensorrt.max_num_tokens is" if settings.max_num_tokens
                 else f"tensorrt.max_num_tokens is unset (TensorRT-LLM's default {step_tokens})")
        problems.append(problem(
            f"{named}, but the workload sends prompts of {prompt} tokens, which the PyTorch "
            "runtime refuses without chunked prefill",
            f"raise tensorrt.max_num_tokens to at least {prompt}, or pass "
            "enable_chunked_prefill: true in passthrough_kwargs"))
    needed = prompt + output
    if settings.max_seq_len is not None and settings.max_seq_len < needed:
        problems.append(problem(
            f"tensorrt.max_seq_len is {settings.max_seq_len}, but the workload needs "
            f"{needed} (its longest prompt + output)",
            f"raise tensorrt.max_seq_len to at least {needed}, or leave it unset"))
    elif model_limit is not None and model_limit < needed:
        problems.append(problem(
            f"the model holds sequences of at most {model_limit} tokens (its "
            "max_position_embeddings and RoPE scaling, which also cap tensorrt.max_seq_len), "
            f"but the workload needs {needed} (its longest prompt + output); the PyTorch "
            "runtime would cut outputs short",
            "shorten input_len/output_len, or use a model with a longer context"))
    return problems


def effective(llm: Any) -> dict[str, Any]:
    """What the PyTorch LLM runs with, read back from ``llm.args`` (None where it has none)."""
    args = getattr(llm, "args", None)
    values: dict[str, Any] = {name: _plain(getattr(args, name, None)) for name in READ_BACK}
    graphs = getattr(args, "cuda_graph_config", None)
    values["cuda_graph_config"] = None if graphs is None else {
        name: _plain(getattr(graphs, name, None))
        for name in ("batch_sizes", "max_batch_size", "enable_padding")}
    captured = None if graphs is None else captured_batch_sizes(
        list(getattr(graphs, "batch_sizes", None) or []), getattr(args, "max_batch_size", None),
        getattr(args, "max_num_tokens", None))
    values["cuda_graph_captured_batch_sizes"] = captured
    values["cuda_graph_replay"] = ("a decode step replays a graph only when its batch size is "
                                   "one of the captured sizes (no padding)")
    values["cuda_graphs"] = None if args is None else bool(captured)
    kv_cache = getattr(args, "kv_cache_config", None)
    values["kv_cache_config"] = {
        name: _plain(getattr(kv_cache, name, None))
        for name in ("enable_block_reuse", "free_gpu_memory_fraction", "max_tokens", "dtype")}
    quant = getattr(args, "quant_config", None)
    values["checkpoint_quant_algo"] = _plain(getattr(quant, "quant_algo", None))
    return values


def parameters(config: ExperimentConfig, llm: Any) -> dict[str, Any]:
    """The PyTorch runtime's effective parameters: what was asked, and what ``llm.args`` says.

    ``llm`` is the in-process LLM, or None through ``trtllm-serve``, which reports no resolved
    arguments: then only what the command and the options file asked for is known.
    """
    tensor_parallel, pipeline_parallel = build.parallel_sizes(config)
    asked = {"tensor_parallel_size": tensor_parallel,
             "pipeline_parallel_size": pipeline_parallel,
             "dtype": build.dtype(config), **limits(config), **asked_knobs(config)}
    read_back = None if llm is None else effective(llm)
    return {"engine_source": None, "pytorch_runtime_asked": asked,
            "pytorch_runtime": read_back,
            "pytorch_runtime_source": ("llm.args after loading" if read_back is not None
                                       else "asked of trtllm-serve; not read back")}


def _plain(value: Any) -> Any:
    """A JSON value: enums by value, sequences as lists, other objects as their text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    inner = getattr(value, "value", None)
    return inner if isinstance(inner, bool | int | float | str) else str(value)
