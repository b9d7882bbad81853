"""TensorRT-LLM's own OpenAI-compatible server (``trtllm-serve``), started on loopback.

This is ``load.client: openai_server`` for TensorRT-LLM (the process, the client and the stream
are :mod:`harness.backends.openai_server`'s). The engine is the one the in-process path would
run: the engine cache's (built there on a miss) or ``tensorrt.engine_dir``. The server loads it
with ``--backend tensorrt`` (1.0's default backend is the PyTorch runtime, which would build
nothing and run another runtime) and the model's own tokenizer.

Limits. ``trtllm-serve`` always passes ``max_batch_size``, ``max_num_tokens``, ``max_seq_len``
and ``max_beam_width`` to the LLM, its own defaults (2,048 / 8,192 / ...) where not given, and
TensorRT-LLM 1.0 refuses run-time limits above the engine's built ones. The command therefore
passes the run-time limits the in-process path would (``tensorrt.max_batch_size`` and
``max_num_tokens`` where the study sets them, which preflight keeps within the engine's), else
the engine's own from its ``config.json``; the beam width is the decoder's, which the engine was
built for.

Options. ``trtllm-serve`` also hands the LLM a scheduler of its own making (its
``get_llm_args``: ``GUARANTEED_NO_EVICT`` with dynamic batch-size tuning), where the LLM API's
default has no tuning. The ``--extra_llm_api_options`` file, which the server applies over its
flags, puts back the in-process default (:data:`IN_PROCESS_SCHEDULER`; a ``scheduler_config``
in ``passthrough_kwargs`` replaces it, as it would in process), then ``passthrough_kwargs``,
then the KV-cache settings (block reuse off unless the study turns it on, the memory
fraction), so the server runs the engine as the in-process path does.

Requests. ``/v1/completions`` with a token-id prompt, ``min_tokens = max_tokens`` and
``ignore_eos`` (exactly N tokens), ``detokenize: false`` (each chunk then carries its
``token_ids`` and no text: counts are the engine's, and no detokenising runs on the server's
loop). The request schema forbids unknown fields: ``end_id`` and ``pad_id`` are the server's
(from the tokenizer), which ``ignore_eos`` makes irrelevant to the length.

The PyTorch runtime (``tensorrt.runtime: pytorch``) is served the same way with
``--backend pytorch`` and the checkpoint directory as MODEL: its limits are the study's where
set (else the server's defaults, which are the in-process LLM's), and its knobs
(:func:`.pytorch_runtime.knobs`) and ``max_input_len`` (no flag) go into the options file.

Nothing here imports TensorRT-LLM.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.backends import openai_server
from harness.backends.base import Request, StreamFn

LABEL = "trtllm-serve"

MODULE = "tensorrt_llm.commands.serve"
"""``trtllm-serve``'s module, started with ``python -m`` by the harness's own interpreter (the
console script is the same entry point; the module form needs no PATH lookup)."""

ENGINE_LIMITS = ("max_batch_size", "max_num_tokens", "max_seq_len")
"""Build limits the command repeats from the engine's ``config.json``."""

IN_PROCESS_SCHEDULER = {"capacity_scheduler_policy": "GUARANTEED_NO_EVICT",
                        "dynamic_batch_config": None}
"""The LLM API's default ``SchedulerConfig`` (0.17-1.2), which ``LLM(...)`` in process gets."""

STANDARD_FIELDS = ("temperature", "top_p", "seed", "n", "best_of")
"""Sampling fields of the OpenAI completions schema; the others are TensorRT-LLM's extensions
of the same request (its schema has them at the top level: the ``openai`` client sends
``extra_body`` there)."""

SERVER_OWNED = ("end_id", "pad_id", "max_tokens", "detokenize")
"""In-process ``SamplingParams`` fields the request does not carry: the server takes end and
pad ids from the tokenizer; length and detokenising are set per request below."""

START_FIX = ("read the server's log above; the tensorrt: section sets its flags and its "
             "--extra_llm_api_options file (passthrough_kwargs go there too)")

LENGTH_FIX = ("check that trtllm-serve honours min_tokens, ignore_eos and detokenize "
              "(TensorRT-LLM 1.0 or later); remove passthrough_kwargs that change stopping")


def llm_api_options(kv_cache: dict[str, Any], passthrough: dict[str, Any],
                    knobs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``--extra_llm_api_options`` mapping: in-process scheduler, knobs, passthrough, KV.

    ``knobs`` are the PyTorch runtime's (:func:`.pytorch_runtime.knobs`).
    The server replaces its whole ``KvCacheConfig`` (and ``SchedulerConfig``) with a mapping
    given here, so the memory fraction goes with block reuse.
    """
    return {"scheduler_config": dict(IN_PROCESS_SCHEDULER), **(knobs or {}), **passthrough,
            "kv_cache_config": dict(kv_cache)}


def engine_limits(engine_config: dict[str, Any], runtime: dict[str, int]) -> dict[str, int]:
    """The limits to serve an engine with: the study's run-time ones, else the engine's own.

    The engine's built limits come from its ``config.json``; trtllm-serve's own defaults may
    exceed them, which TensorRT-LLM 1.0 refuses.
    """
    built = engine_config.get("build_config") or {}
    found = {name: built[name] for name in ENGINE_LIMITS if isinstance(built.get(name), int)}
    return {**found, **runtime}


def server_command(model: Path, tokenizer_dir: Path, runtime_name: str, limits: dict[str, int],
                   parallel: tuple[int, int], beam_width: int, options_file: Path,
                   port: int) -> list[str]:
    """The command that serves ``model`` on ``port``.

    Args:
        model: the engine directory (cache entry or ``tensorrt.engine_dir``) for the engine
            runtime, the checkpoint directory for the PyTorch runtime.
        tokenizer_dir: the model's checkpoint directory, for its tokenizer.
        runtime_name: ``engine`` (``--backend tensorrt``) or ``pytorch``.
        limits: ``max_batch_size``, ``max_num_tokens``, ``max_seq_len`` where known
            (:func:`engine_limits`); the server's defaults stand for the others.
        parallel: (tensor parallel size, pipeline parallel size).
        beam_width: the decoder's beam width.
        options_file: the ``--extra_llm_api_options`` file (:func:`write_options`).
        port: the loopback port.

    """
    flags: list[str] = []
    for name in ENGINE_LIMITS:
        if limits.get(name) is not None:
            flags += [f"--{name}", str(int(limits[name]))]
    tensor_parallel, pipeline_parallel = parallel
    backend = "pytorch" if runtime_name == "pytorch" else "tensorrt"
    return [sys.executable, "-m", MODULE, "serve", str(model),
            "--tokenizer", str(tokenizer_dir), "--backend", backend,
            "--host", "127.0.0.1", "--port", str(port), *flags,
            "--max_beam_width", str(beam_width),
            "--tp_size", str(tensor_parallel), "--pp_size", str(pipeline_parallel),
            "--extra_llm_api_options", str(options_file)]


def write_options(options: dict[str, Any]) -> Path:
    """Write the options file (JSON, which YAML reads) where only this run sees it."""
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept until the server stops
        "w", prefix="llem-trtllm-serve-", suffix=".yaml", delete=False, encoding="utf-8")
    with handle:
        json.dump(options, handle)
    return Path(handle.name)


def completion_kwargs(request: Request, model: str,
                      sampling: dict[str, Any]) -> dict[str, Any]:
    """``completions.create`` arguments for one request: token ids in, exactly N ids out.

    ``sampling`` is the backend's in-process ``SamplingParams`` fields for this request; the
    same decoding goes over the wire, less what the server owns (:data:`SERVER_OWNED`).
    """
    standard = {name: value for name, value in sampling.items()
                if name in STANDARD_FIELDS and value is not None}
    extra = {name: value for name, value in sampling.items()
             if name not in STANDARD_FIELDS and name not in SERVER_OWNED}
    extra.update({"min_tokens": request.max_new_tokens, "ignore_eos": True,
                  "detokenize": False})
    return {
        "model": model,
        "prompt": list(request.input_ids),
        "max_tokens": request.max_new_tokens,
        "stream": True,
        # usage once, at the end: not on every chunk, which costs the server serialising work
        "stream_options": {"include_usage": True, "continuous_usage_stats": False},
        "extra_body": extra,
        **standard,
    }


def openai_stream(client: Any, model: str, sampling_of: Any) -> StreamFn:
    """Serving through ``trtllm-serve``: one streamed ``/v1/completions`` call per request.

    Args:
        client: the ``openai`` client (:func:`harness.backends.openai_server.openai_client`).
        model: the name the server serves (its MODEL argument, read from ``/v1/models``).
        sampling_of: ``max_new_tokens -> SamplingParams fields`` (the backend's).

    """
    # Newer releases put a cached-token count in the usage that the TensorRT-engine path may not
    # measure: it is not taken for one (in process, the count is unknown too).
    return openai_server.openai_stream(
        client,
        lambda request: completion_kwargs(request, model, sampling_of(request.max_new_tokens)),
        LABEL, LENGTH_FIX, cached_tokens=False)
