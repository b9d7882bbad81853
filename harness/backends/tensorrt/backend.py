"""The TensorRT-LLM backend: one compiled engine (or the PyTorch runtime), requests in flight.

``tensorrt.runtime`` picks TensorRT-LLM's runtime. ``engine`` (below) builds or loads a TensorRT
engine. ``pytorch`` runs TensorRT-LLM's PyTorch runtime, ``tensorrt_llm.LLM`` from 1.0, on the
checkpoint itself (:mod:`.pytorch_runtime`): no build, no engine cache; generation, streaming,
serving and timing are the same code for both, as both return the same request outputs. Which
runtimes the installed release has is read from its files (:mod:`.runtimes`); a runtime it lacks
fails preflight and load, and llem never runs the other one in its place.

The engine comes from ``tensorrt.engine_dir`` when one is given; otherwise from the engine cache
(:mod:`harness.engine_cache`), which builds it on a miss through TensorRT-LLM's LLM API (the
TensorRT-engine path: ``tensorrt_llm._tensorrt_engine.LLM`` in 1.x, ``tensorrt_llm.LLM`` in
0.17-0.21) and keeps what ``LLM.save`` writes. A build is part of the run's cold start; the LLM
that built the engine also serves it, so a miss loads nothing twice.

Every request goes to the engine at once and its scheduler batches them in flight, up to the
engine's ``max_batch_size``. EOS is ignored and ``min_tokens = max_tokens``, so each request
produces exactly its fixed length.

Timing. Without streaming, one ``LLM.generate`` call returns every result together, so its
edges are every request's start and end, and there are no phase marks. With
``latency.streaming`` every request streams through ``generate_async`` in one asyncio loop and
each new token is stamped on arrival (tokens that arrive together share a stamp). In-flight
batching runs one request's prefill in the same engine steps as other requests' decoding, so no
instant separates the workload's prefill from its decode; the split is approximate: prefill from
the call's start to the last request's first token, decode from there to the end.

Serving (``load.mode: serving``) streams each request through ``generate_async`` at its
arrival, or, with ``load.client: openai_server``, through ``trtllm-serve`` serving the same
engine on loopback (:mod:`harness.backends.tensorrt.server`).

``passthrough_kwargs`` go to ``LLM(...)`` (when building and when loading an engine); naming an
argument llem sets itself (:data:`build.OWN_LLM_ARGS`) fails preflight and load. tensorrt_llm
is imported inside methods only, and nothing here touches CUDA outside the library.

Cross-request KV-block reuse is off unless the study turns it on (:func:`build.block_reuse`).
How many prompt tokens reused blocks is not reported: the LLM API's outputs do not carry it
(only per-request performance metrics do, in some versions, at a cost per request), so
``cached_input_tokens`` stays None.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from harness import models
from harness.backends import openai_server
from harness.backends.base import (
    Backend,
    BatchCallback,
    GenerationOutput,
    PhaseMark,
    Request,
    RequestOutput,
    T,
)
from harness.backends.common import library_problem, problem, sampling_values
from harness.backends.tensorrt import build, pytorch_runtime, runtimes, server
from harness.engine_cache import EngineCache, default_cache_root
from harness.errors import BackendError, LlemError
from harness.load import StreamChunk, StreamFn
from harness.schema.config import DecoderConfig, ExperimentConfig
from harness.schema.result import EngineCacheRecord, MemoryMetrics

UNKNOWN_CAPABILITY = "unknown"
"""Compute capability recorded in the cache key when the run has no GPU facts."""

_ENGINE_FIX = ("see the TensorRT-LLM message above; check the tensorrt section (limits, "
               "quantization, tp_size/pp_size) against the model and the GPUs")
_PYTORCH_FIX = ("see the TensorRT-LLM message above; check the tensorrt section (limits, "
                "cuda_graphs, attention_backend, tp_size/pp_size) against the model and the GPUs")
_LENGTH_FIX = ("remove passthrough_kwargs that change stopping or the number of returned "
               "sequences; report it if the engine ignores min_tokens/ignore_eos")


def engine_llm_class() -> Any:
    """TensorRT-LLM's LLM class for TensorRT engines, where the installed package has one.

    ``tensorrt_llm._tensorrt_engine.LLM`` from 1.0; the top-level ``LLM`` in 0.x only: from
    1.0 the top-level one is the PyTorch runtime, which is never taken for the engine path.

    Raises:
        BackendError: the package has no TensorRT-engine runtime (:mod:`.runtimes`).

    """
    found = runtimes.installed()
    if found is None or found.engine_module is None:
        version = None if found is None else found.version
        raise BackendError(
            runtimes.engine_missing_message(found or runtimes.Installed(version, None, True)),
            fix=runtimes.ENGINE_FIX)
    return _import(found.engine_module).LLM


def _import(module: str) -> Any:
    """Import a TensorRT-LLM module, or raise an llem error with its fix.

    A failure (CUDA, the driver, a broken install) is never a raw ImportError or OSError.
    """
    try:
        return importlib.import_module(module)
    except Exception as error:  # the library fails to import in many ways; each is this one
        raise BackendError(f"{module} fails to import: {type(error).__name__}: {error}",
                           fix="check the GPU driver and CUDA libraries the image sees "
                           "(llem doctor), or rebuild the tensorrt image") from error


def pytorch_llm_class() -> Any:
    """TensorRT-LLM's PyTorch-runtime LLM: the top-level ``tensorrt_llm.LLM`` from 1.0.

    Raises:
        BackendError: the package has no PyTorch runtime (0.x, whose top-level LLM is the
            TensorRT-engine path: never taken for the PyTorch runtime).

    """
    found = runtimes.installed()
    if found is None or not found.pytorch:
        raise BackendError(
            runtimes.pytorch_missing_message(found or runtimes.Installed(None, None, False)),
            fix=runtimes.PYTORCH_FIX)
    return _import("tensorrt_llm").LLM


def decoding_kwargs(decoder: DecoderConfig) -> dict[str, Any]:
    """``SamplingParams`` decoding fields for the decoder mode, every default resolved.

    Greedy is ``top_k=1``: TensorRT-LLM decodes greedily for top_k 1 with no top_p, and
    setting it says so regardless of what the C++ runtime's defaults are. Sampling passes all
    three parameters (top_k 0 = no top-k cut, top_p 1.0 = no nucleus cut). Beam search asks for
    ``best_of`` beams and returns the best one (``n=1``).
    """
    if decoder.mode == "sampling":
        return sampling_values(decoder)
    if decoder.mode == "beam":
        return {"use_beam_search": True, "n": 1, "best_of": build.beam_width(decoder)}
    return {"top_k": 1}


class TensorRtBackend(Backend):
    """A TensorRT-LLM engine on one or more CUDA GPUs, built once per configuration and cached.

    Args:
        config: the experiment; its ``tensorrt`` section may be absent (all defaults).
        device: must be "cuda:N"; the engine places itself on the visible GPUs.

    """

    name = "tensorrt"
    cuda_visible_form = "index"  # integer indices: what every engine library reads

    def __init__(self, config: ExperimentConfig, device: str) -> None:
        super().__init__(config, device)
        self.settings = build.settings_of(config)
        self._tokenizer = models.Tokenizer(config.model, config.load_revision)
        self._model_dir: Path | None = None
        self._llm: Any = None
        self._record: EngineCacheRecord | None = None
        self._engine_config: dict[str, Any] = {}
        self._server: openai_server.LoopbackServer | None = None
        self._options_file: Path | None = None
        self._served_name: str | None = None
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._calls = 0

    @property
    def through_server(self) -> bool:
        """Whether requests go to ``trtllm-serve`` (``load.client: openai_server``)."""
        return self.config.load.serving and self.config.load.client == "openai_server"

    # -- preflight -------------------------------------------------------------------------

    def preflight(self) -> list[str]:
        """Return every problem: library, model files (offline), device, GPUs, engine limits."""
        missing = library_problem("tensorrt_llm", "tensorrt", "tensorrt")
        problems = [missing] if missing else []
        runtime_problem = self._runtime_problem() if missing is None else None
        if runtime_problem is not None:
            problems.append(runtime_problem)
        try:
            models.directory(self.config.model, self.config.load_revision)
        except LlemError as error:
            problems.append(str(error))
        problems.extend(self._device_problems())
        conflict = self._passthrough_error()
        if conflict is not None:
            problems.append(problem(conflict.message, conflict.fix or ""))
        if self.runtime == "pytorch":
            return problems + pytorch_runtime.workload_problems(self.config,
                                                                self._model_limit())
        if self.settings.engine_dir:
            problems.extend(build.engine_problems(self.config, self._given_engine_dir()))
            return problems
        problems.extend(build.workload_problems(self.config, self._model_limit()))
        return problems

    @property
    def runtime(self) -> str:
        """Which of TensorRT-LLM's runtimes the study asked for (``tensorrt.runtime``)."""
        return self.settings.runtime

    def _runtime_problem(self) -> str | None:
        """Why the installed tensorrt_llm cannot run the asked runtime, or None when it can."""
        found = runtimes.installed()
        if found is None:
            return None  # not installed: library_problem says so
        if self.runtime == "pytorch":
            return None if found.pytorch else problem(runtimes.pytorch_missing_message(found),
                                                       runtimes.PYTORCH_FIX)
        return None if found.engine else problem(runtimes.engine_missing_message(found),
                                                 runtimes.ENGINE_FIX)

    def _model_limit(self) -> int | None:
        """:func:`.pytorch_runtime.model_max_seq_len` (None when config.json is unreadable)."""
        try:
            config = json.loads((self._require_model_dir() / "config.json").read_text())
        except (OSError, ValueError, LlemError):
            return None  # a missing model is preflight's own problem
        return pytorch_runtime.model_max_seq_len(config) if isinstance(config, dict) else None

    def _passthrough_error(self) -> BackendError | None:
        if self.runtime == "pytorch":
            return pytorch_runtime.passthrough_error(self.config)
        return build.passthrough_error(self.config)

    def caches_across_requests(self) -> bool:
        """TensorRT-LLM's KV-cache block reuse: off unless the study turned it on."""
        return build.block_reuse(self.config)[0]

    def gpus_needed(self) -> int:
        """tp_size x pp_size: one GPU per rank."""
        tensor_parallel, pipeline_parallel = build.parallel_sizes(self.config)
        return tensor_parallel * pipeline_parallel

    def _device_problems(self) -> list[str]:
        if not self.device.startswith("cuda"):
            return [problem(f"backend 'tensorrt' runs on NVIDIA GPUs only, not on device "
                            f"'{self.device}'",
                            "run on a machine with an NVIDIA GPU (device cuda:N), or use the "
                            "pytorch backend on cpu")]
        tensor_parallel, pipeline_parallel = build.parallel_sizes(self.config)
        world = tensor_parallel * pipeline_parallel
        # Without GPU facts (energy.backend none) the count is unknown: TensorRT-LLM checks it.
        if self.gpu_info and world > len(self.gpu_info):
            return [problem(f"tensorrt.tp_size x pp_size needs {world} GPUs, but the run has "
                            f"{len(self.gpu_info)}",
                            "lower tp_size/pp_size, or give the run more GPUs")]
        return []

    def compute_capability(self) -> str:
        """The first GPU's compute capability from the run's GPU facts ("unknown" without)."""
        if self.gpu_info and self.gpu_info[0].compute_capability:
            return self.gpu_info[0].compute_capability
        return UNKNOWN_CAPABILITY

    # -- loading ---------------------------------------------------------------------------

    def load(self) -> None:
        """Open the given engine, or get it from the cache (building it on a miss).

        Raises:
            PreflightError: the model cannot be found offline.
            BackendError: TensorRT-LLM failed to build or load the engine, or the cache failed.

        """
        self._model_dir = models.directory(self.config.model, self.config.load_revision)
        conflict = self._passthrough_error()
        if conflict is not None:
            raise conflict
        if self.runtime == "pytorch":
            self._load_pytorch(self._model_dir)
            return
        engine_llm_class()  # the engine runtime is there, or a BackendError that says why not
        if self.settings.engine_dir:
            engine_dir = self._given_engine_dir()
            if not self.through_server:  # else the server loads it
                self._llm = self._construct(engine_dir, build.runtime_settings(self.config),
                                            "load")
            self._record = EngineCacheRecord(source="engine_dir", engine_dir=str(engine_dir))
        else:
            self._load_through_cache(self._model_dir)
        self._engine_config = build.read_engine_config(Path(self._require_record().engine_dir))
        if self.through_server:
            self._start_server(Path(self._require_record().engine_dir), self._model_dir)

    def _load_pytorch(self, model_dir: Path) -> None:
        """The PyTorch runtime on the checkpoint: in process, or in ``trtllm-serve``."""
        pytorch_llm_class()  # the PyTorch runtime is there, or a BackendError that says why not
        if self.through_server:
            self._start_server(model_dir, model_dir)
            return
        try:
            # passthrough_kwargs first: they may add LLM options, never replace llem's.
            self._llm = pytorch_llm_class()(**{
                **self.config.passthrough_kwargs, **pytorch_runtime.llm_settings(self.config),
                "model": str(model_dir), "tokenizer": str(model_dir)})
        except LlemError:
            raise
        except Exception as error:  # TensorRT-LLM raises many types; each is this failure
            raise BackendError(f"TensorRT-LLM's PyTorch runtime failed to load "
                               f"'{self.config.model}': {error}",
                               fix=_PYTORCH_FIX) from error

    def _start_server(self, model: Path, model_dir: Path) -> None:
        """``trtllm-serve`` on the engine (or the checkpoint), and its client."""
        self._options_file = server.write_options(self._server_options())
        port = openai_server.free_port()
        runtime = {name: value for name, value in self._server_limits().items()
                   if name != "max_beam_width"}
        command = server.server_command(
            model, model_dir, self.runtime, runtime, build.parallel_sizes(self.config),
            build.beam_width(self.config.decoder), self._options_file, port)
        self._server = openai_server.LoopbackServer(server.LABEL, command, port,
                                                    fix=server.START_FIX)
        self._server.start()
        self._served_name = str(self._server.models().get("id") or model)
        self._client = openai_server.openai_client(self._server.base_url)
        self._loop = asyncio.new_event_loop()

    def _server_options(self) -> dict[str, Any]:
        knobs: dict[str, Any] = {}
        if self.runtime == "pytorch":
            knobs = pytorch_runtime.knobs(self.config)
            if self.settings.max_input_len is not None:  # it has no trtllm-serve flag
                knobs["max_input_len"] = self.settings.max_input_len
        return server.llm_api_options(build.kv_cache_values(self.config),
                                      dict(self.config.passthrough_kwargs), knobs)

    def _server_limits(self) -> dict[str, int]:
        """The limits on the server's command line: the study's, else the engine's built ones."""
        if self.runtime == "pytorch":
            return pytorch_runtime.limits(self.config)
        return server.engine_limits(self._engine_config, build.runtime_limits(self.config))

    def _load_through_cache(self, model_dir: Path) -> None:
        # The host's digest of the same checkpoint when it took one (reading a local model's
        # every file again in a fresh container would cost seconds per GB at every run).
        revision = self.config.model_digest or models.resolved_revision(model_dir)
        description = build.cache_description(
            self.config, revision, self._library_version(), self.compute_capability())
        built: list[Any] = []

        def build_engine(target: Path) -> None:
            built.append(self._construct(model_dir, self._build_settings(), "build"))
            try:
                built[0].save(str(target))
            except Exception as error:  # TensorRT-LLM raises many types; each is this failure
                raise BackendError(f"saving the built engine into {target} failed: {error}",
                                   fix="check free space and permissions of the engine "
                                   "cache") from error

        root = self.engine_cache_root or default_cache_root()
        try:
            outcome = EngineCache(root).get_or_build(description, build_engine)
        except BaseException as error:
            for llm in built:
                llm.shutdown()
            if isinstance(error, (OSError, RuntimeError)):
                raise _cache_error(error, root) from error
            raise
        if self.through_server:
            for llm in built:  # the server loads the saved engine; the builder's GPUs go
                llm.shutdown()
        else:
            self._llm = built[0] if built else self._construct(
                outcome.engine_dir, build.runtime_settings(self.config), "load")
        self._record = EngineCacheRecord(
            source="cache", hit=outcome.hit, key=outcome.key, engine_dir=str(outcome.engine_dir),
            build_s=outcome.build_s, description=description)

    def _build_settings(self) -> dict[str, Any]:
        try:
            return build.build_settings(self.config)
        except LlemError:
            raise
        except Exception as error:  # a class or member this release lacks, a refused value
            raise BackendError(
                f"tensorrt_llm {self._library_version()} cannot take llem's build settings for "
                f"'{self.config.model}': {type(error).__name__}: {error}",
                fix=_ENGINE_FIX) from error

    def _construct(self, model: Path, settings: dict[str, Any], action: str) -> Any:
        # passthrough_kwargs first: they may add LLM options, never replace llem's.
        arguments = {**self.config.passthrough_kwargs, **settings, "model": str(model),
                     "tokenizer": str(self._require_model_dir())}
        llm_class = engine_llm_class()
        try:
            return llm_class(**arguments)
        except Exception as error:  # TensorRT-LLM raises many types; each is this failure
            raise BackendError(f"TensorRT-LLM failed to {action} the engine for "
                               f"'{self.config.model}': {error}", fix=_ENGINE_FIX) from error

    def _given_engine_dir(self) -> Path:
        return Path(self.settings.engine_dir or "").expanduser()

    def _library_version(self) -> str:
        return str(importlib.import_module("tensorrt_llm").__version__)

    def unload(self) -> None:
        """Shut the engine's executor (or the server) down and release its GPUs."""
        llm, self._llm = self._llm, None
        loop, client, served = self._loop, self._client, self._server
        self._loop = self._client = self._server = None
        try:
            if llm is not None:
                llm.shutdown()
            if client is not None and loop is not None:
                loop.run_until_complete(client.close())
        finally:
            if served is not None:
                served.stop()
            if loop is not None:
                openai_server.close_loop(loop)
            if self._options_file is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._options_file)
                self._options_file = None

    # -- tokenizer -------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Tokenise without special tokens, with the model's own tokenizer (on the CPU)."""
        return self._tokenizer.encode(text)

    def vocab_ids(self) -> list[int]:
        """Ordinary token ids below the model's vocabulary size, special tokens excluded."""
        return self._tokenizer.vocab_ids(models.vocab_size(self._require_model_dir()))

    def _pad_id(self) -> int | None:
        value = self._tokenizer.tokenizer.pad_token_id
        return self._tokenizer.eos_token_id() if value is None else int(value)

    # -- generation ------------------------------------------------------------------------

    def warmup_requests(self, requests: list[Request]) -> list[Request]:
        """What the engine runs at once: the workload, up to the configured max_batch_size."""
        return list(requests[: self.settings.max_batch_size or len(requests)])

    def sampling_kwargs(self, max_new_tokens: int) -> dict[str, Any]:
        """``SamplingParams`` fields for one request of ``max_new_tokens`` tokens."""
        return {
            **decoding_kwargs(self.config.decoder),
            "max_tokens": max_new_tokens,
            "min_tokens": max_new_tokens,
            "ignore_eos": True,
            "end_id": self._tokenizer.eos_token_id(),
            "pad_id": self._pad_id(),
            "seed": self.config.random_seed,
            "detokenize": False,  # llem counts tokens; text would only cost host time
        }

    def serve(self, drive: Callable[[StreamFn], Coroutine[Any, Any, T]]) -> T:
        """Serving mode: each request streamed at its arrival, in flight with the others.

        In process, through ``generate_async``: the requests share one asyncio loop
        (``asyncio.run``) with the load driver, as the streaming path's do. Through the server,
        as streamed ``/v1/completions`` calls on the client's loop. Either way TensorRT-LLM's
        executor batches them in flight.
        """
        try:
            if self._client is not None and self._loop is not None and self._server is not None:
                served = self._loop.run_until_complete(drive(self._server_stream()))
                self._server.check_running()  # a server that died mid-run fails the run
                return served
            llm = self._require_llm()
            return asyncio.run(drive(_serving_stream(llm, self.sampling_kwargs)))
        except LlemError:
            raise
        except Exception as error:  # TensorRT-LLM raises many types; each is this failure
            if self._server is not None:
                self._server.check_running()
            raise BackendError(f"TensorRT-LLM serving failed: {error}",
                               fix="see the traceback in error.json") from error

    def generate(
        self, requests: list[Request], on_batch: BatchCallback | None = None
    ) -> GenerationOutput:
        """Generate exactly ``max_new_tokens`` per request, all requests in flight together.

        Raises:
            BackendError: generation failed or did not produce the fixed length.

        """
        self._calls += 1
        if self._client is not None and self._loop is not None:
            try:
                outputs, mark = openai_server.generate_through(
                    self._loop, self._server_stream(), requests, self._calls)
            except Exception as error:  # the client's and the server's failures alike
                if self._server is not None:
                    self._server.check_running()  # its death is the cause to report
                if isinstance(error, LlemError):
                    raise
                raise BackendError(f"generation through trtllm-serve failed: {error}",
                                   fix="see the server's log in container.log") from error
            if on_batch is not None:
                on_batch(len(requests), len(requests))
            return GenerationOutput(outputs=outputs, phase_marks=[mark])
        llm = self._require_llm()
        sampling_class = importlib.import_module("tensorrt_llm").SamplingParams
        params = [sampling_class(**self.sampling_kwargs(r.max_new_tokens)) for r in requests]
        try:
            if self.config.latency.streaming:
                output = _generate_streaming(llm, requests, params)
            else:
                output = _generate_at_once(llm, requests, params)
        except LlemError:
            raise
        except Exception as error:  # TensorRT-LLM raises many types; each is this failure
            raise BackendError(f"TensorRT-LLM generation failed: {error}",
                               fix="see the traceback in error.json") from error
        if on_batch is not None:
            on_batch(len(requests), len(requests))
        return output

    def _server_stream(self) -> StreamFn:
        return server.openai_stream(self._client, self._served_name or "", self.sampling_kwargs)

    def synchronize(self) -> None:
        """Nothing to wait for: ``generate`` returns only when its tokens are on the host."""

    def _require_llm(self) -> Any:
        if self._llm is None:
            raise BackendError("the engine is not loaded", fix="call load() before generating")
        return self._llm

    def _require_model_dir(self) -> Path:
        # Resolved on first use, so a dataset can be tokenised before the engine is loaded.
        if self._model_dir is None:
            self._model_dir = models.directory(self.config.model, self.config.load_revision)
        return self._model_dir

    def _require_record(self) -> EngineCacheRecord:
        if self._record is None:
            raise BackendError("the engine is not loaded", fix="call load() first")
        return self._record

    # -- reporting -------------------------------------------------------------------------

    def effective_parameters(self) -> dict[str, Any]:
        """Backend parameters as actually used: the runtime, its settings, KV cache, decoding.

        ``runtime`` names which of TensorRT-LLM's runtimes produced the figures; the engine
        runtime records the engine's build, the PyTorch runtime what ``llm.args`` says it runs
        with (:func:`.pytorch_runtime.effective`). ``decoding_by_library`` is the installed
        release's own reading of the ``SamplingParams`` the requests carry (its greedy rule
        changed across releases). ``llm_passthrough_kwargs`` are the ``passthrough_kwargs``
        handed to ``LLM(...)``.
        """
        sampling = self.sampling_kwargs(self.config.output_len)
        extra: dict[str, Any] = {}
        if self.through_server:
            for name in server.SERVER_OWNED[:2]:  # end and pad ids: the server's tokenizer's
                sampling.pop(name, None)
            # what the server's CompletionRequest.to_sampling_params fills in when absent
            sampling.setdefault("temperature", 1.0)
            sampling.setdefault("top_p", 1.0)
            backend = "pytorch" if self.runtime == "pytorch" else "tensorrt"
            extra = {
                "engine_runner": f"trtllm-serve (--backend {backend})",
                "server_command": self._server.command if self._server is not None else None,
                "server_llm_api_options": self._server_options(),
                "end_and_pad_ids": "the server's, from the model's tokenizer",
            }
        runtime = (pytorch_runtime.parameters(self.config, self._llm)
                   if self.runtime == "pytorch"
                   else build.engine_parameters(self.config, self._engine_config, self._record,
                                                self._llm))
        return {
            # which of TensorRT-LLM's runtimes produced the figures (docs/backends.md)
            "runtime": self.runtime,
            "runtime_llm_class": self._llm_class_name(),
            **extra,
            **runtime,
            "kv_cache_config": self._kv_cache_config(),
            "cross_request_cache": self._cross_request_cache(),
            "batching": "inflight",
            "device": self.device,
            "decoder_mode": self.config.decoder.mode,
            **sampling,
            "decoding_by_library": library_decoding(sampling),
            "output_length": "fixed: min_tokens = max_tokens, ignore_eos (EOS ignored)",
            "llm_passthrough_kwargs": dict(self.config.passthrough_kwargs),
            "timing": self._timing(),
        }

    def _llm_class_name(self) -> str | None:
        found = runtimes.installed()
        if found is None:
            return None
        if self.runtime == "pytorch":
            return "tensorrt_llm.LLM" if found.pytorch else None
        return f"{found.engine_module}.LLM" if found.engine_module else None

    def _timing(self) -> str:
        if self.through_server:
            return ("serving: each request sent at its arrival to trtllm-serve on loopback as a "
                    "streamed /v1/completions call with token ids; each chunk stamped when it "
                    "reached the harness (docs/serving.md)")
        if self.config.load.serving:
            return ("serving: each request submitted through generate_async at its arrival and "
                    "streamed; each chunk stamped when it reached the harness (docs/serving.md)")
        if self.config.latency.streaming:
            return ("per-token arrival through generate_async streams; phase split approximate "
                    "(in-flight batching)")
        return "edges of one LLM.generate call over all requests"

    def _kv_cache_config(self) -> dict[str, Any]:
        if self.through_server:
            # what the options file sets; the server reports no resolved LLM arguments
            values = build.kv_cache_values(self.config)
            return {"free_gpu_memory_fraction": values.get("free_gpu_memory_fraction"),
                    "enable_block_reuse": values["enable_block_reuse"]}
        kv_cache = getattr(getattr(self._llm, "args", None), "kv_cache_config", None)
        requested = self.settings.kv_cache_free_gpu_memory_fraction
        return {
            # None: TensorRT-LLM's runtime default.
            "free_gpu_memory_fraction": getattr(kv_cache, "free_gpu_memory_fraction", requested),
            "enable_block_reuse": getattr(kv_cache, "enable_block_reuse", None),
        }

    def _cross_request_cache(self) -> dict[str, Any]:
        """KV-block reuse as the LLM runs it (else as requested) and who chose it."""
        requested, source = build.block_reuse(self.config)
        kv_cache = getattr(getattr(self._llm, "args", None), "kv_cache_config", None)
        enabled = getattr(kv_cache, "enable_block_reuse", None)
        return {"setting": "kv_cache_config.enable_block_reuse",
                "enabled": requested if enabled is None else enabled, "source": source}

    def memory(self) -> MemoryMetrics | None:
        """None: the engine allocates in its own executor, so NVML is the only view of it."""
        return None

    def parameter_counts(self) -> tuple[int, int]:
        """(all parameters, non-embedding parameters) from the checkpoint's safetensors."""
        return models.parameter_counts(self._require_model_dir())

    def determinism(self) -> dict[str, Any]:
        """The seed every request's SamplingParams carries."""
        return {"seed": self.config.random_seed, "seed_scope": "per request (SamplingParams)"}

    def versions(self) -> dict[str, str]:
        """The tensorrt_llm version, from the library itself."""
        return {"tensorrt_llm": self._library_version()}

    def engine_cache(self) -> EngineCacheRecord | None:
        """Where the engine came from: the cache (hit or build) or ``tensorrt.engine_dir``."""
        return self._record


def library_decoding(sampling: dict[str, Any]) -> dict[str, Any]:
    """How the installed release reads these ``SamplingParams`` fields.

    Built with the library's own class, so its own defaults and greedy rule apply: ``greedy``
    is its ``_greedy_decoding`` (None where the release has no such property); the others are
    the fields as the object holds them after its own validation.
    """
    try:
        params = importlib.import_module("tensorrt_llm").SamplingParams(**sampling)
    except Exception as error:  # an import or validation failure is recorded, not raised
        return {"error": f"{type(error).__name__}: {error}"}
    top_k = getattr(params, "top_k", None)
    return {"greedy": getattr(params, "_greedy_decoding", None),
            # top-k 1 keeps one token whatever top_p and temperature say: argmax decoding
            "argmax": top_k == 1 and not getattr(params, "use_beam_search", False),
            **{name: getattr(params, name, None)
               for name in ("top_k", "top_p", "temperature", "use_beam_search", "n", "best_of")}}


def _cache_error(error: OSError | RuntimeError, root: Path) -> BackendError:
    if isinstance(error, TimeoutError):
        return BackendError(f"{error}: another run is building the same engine",
                            fix="let that run finish; if it died, llem cache prune removes "
                            "its leftovers")
    return BackendError(f"the engine cache in {root} failed: {error}",
                        fix="check that the engine cache directory is writable and has space "
                        "(engine_cache_dir, LLEM_ENGINE_CACHE)")


def _generate_at_once(llm: Any, requests: list[Request], params: list[Any]) -> GenerationOutput:
    start_s = time.perf_counter()
    results = llm.generate([r.input_ids for r in requests], sampling_params=params,
                           use_tqdm=False)
    _check_count(results, requests)
    outputs = []
    for request, result in zip(requests, results, strict=True):
        ids = list(result.outputs[0].token_ids)
        _check_length(request, len(ids), len(ids))
        # generate returns every request at once: no request's own end is observed.
        outputs.append(RequestOutput(request.request_id, len(request.input_ids), len(ids),
                                     start_s=start_s, end_s=None, output_ids=ids))
    return GenerationOutput(outputs=outputs)


def _generate_streaming(llm: Any, requests: list[Request], params: list[Any]
                        ) -> GenerationOutput:
    start_s = time.perf_counter()
    streamed = asyncio.run(_stream_all(llm, requests, params))
    end_s = time.perf_counter()
    outputs = []
    for request, (final, times, chunks) in zip(requests, streamed, strict=True):
        ids = list(final.outputs[0].token_ids)
        _check_length(request, len(ids), len(times))
        outputs.append(RequestOutput(
            request.request_id, len(request.input_ids), len(ids), start_s=start_s,
            end_s=times[-1], first_token_s=times[0], token_times_s=times, output_ids=ids,
            chunk_times_s=chunks))
    prefill_end_s = max(times[0] for _, times, _ in streamed)
    return GenerationOutput(outputs=outputs,
                            phase_marks=[PhaseMark(start_s, prefill_end_s, end_s)])


async def _stream_all(llm: Any, requests: list[Request], params: list[Any]
                      ) -> list[tuple[Any, list[float], list[float]]]:
    streams = (_stream_one(llm, r.input_ids, p) for r, p in zip(requests, params, strict=True))
    return list(await asyncio.gather(*streams))


async def _stream_one(llm: Any, input_ids: list[int], params: Any
                      ) -> tuple[Any, list[float], list[float]]:
    """The final output, every token's arrival time and every chunk's arrival time."""
    # generate_async submits at once; iterating yields the same request object, updated,
    # each time new tokens arrive.
    stream = llm.generate_async(input_ids, sampling_params=params, streaming=True)
    times: list[float] = []
    chunks: list[float] = []
    final = None
    async for partial in stream:
        arrived_s = time.perf_counter()
        new_tokens = len(partial.outputs[0].token_ids_diff)
        times.extend([arrived_s] * new_tokens)
        if new_tokens:
            chunks.append(arrived_s)
        final = partial
    return final, times, chunks


def _serving_stream(llm: Any, sampling_kwargs: Callable[[int], dict[str, Any]]) -> StreamFn:
    """Serving mode: one ``generate_async`` stream per request, submitted at its arrival."""
    sampling_class = importlib.import_module("tensorrt_llm").SamplingParams

    async def stream(request: Request, key: str) -> AsyncIterator[StreamChunk]:
        params = sampling_class(**sampling_kwargs(request.max_new_tokens))
        received = 0
        async for partial in llm.generate_async(request.input_ids, sampling_params=params,
                                                streaming=True):
            ids = list(partial.outputs[0].token_ids_diff)
            received += len(ids)
            yield StreamChunk(token_ids=ids)
        _check_length(request, received, received)

    return stream


def _check_count(results: Any, requests: list[Request]) -> None:
    if results is None or len(results) != len(requests):
        count = 0 if results is None else len(results)
        raise BackendError(f"TensorRT-LLM returned {count} results for {len(requests)} "
                           "requests", fix=_LENGTH_FIX)


def _check_length(request: Request, produced: int, stamped: int) -> None:
    if produced != request.max_new_tokens or stamped != produced:
        raise BackendError(
            f"request {request.request_id} produced {produced} tokens ({stamped} timed) where "
            f"exactly {request.max_new_tokens} were asked for; the fixed-length contract is "
            "broken", fix=_LENGTH_FIX)
