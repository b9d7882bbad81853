"""The vLLM backend: the whole workload handed to vLLM's engine at once, continuous batching.

All requests go to the engine in one submission, as token ids, and vLLM's scheduler batches
them continuously (at most ``max_num_seqs`` sequences and ``max_num_batched_tokens`` tokens per
step). Each request generates exactly ``max_new_tokens`` (``min_tokens = max_tokens`` with
``ignore_eos``). The model and the tokenizer are the checkpoint's local directory, so runs
never download; llem tokenises with the same tokenizer on the CPU and counts parameters from
the safetensors headers, because the weights live only in vLLM's worker processes.

Nothing here touches CUDA. vLLM is imported inside ``load``, after its environment is set
(:data:`harness.backends.vllm.engine.ENVIRONMENT`, recorded), and the engine initialises the
GPUs in its own processes. For vLLM, ``passthrough_kwargs`` are further engine arguments: they
go to ``LLM(...)`` (or ``AsyncEngineArgs(...)``) as they are, and an unknown name fails the load.

Timing without ``latency.streaming``: the workload is one ``LLM.generate`` call, which returns
when every request has finished. Each request is recorded as spanning the whole call (start and
end at the call's edges); no first-token time is observable (V1 engines leave
``RequestOutput.metrics`` empty), so there is no TTFT, no ITL and no prefill/decode split: the
approximate split needs first-token times.

Timing with ``latency.streaming``: the engine is ``AsyncLLMEngine``. All requests are submitted
at once, each as its own stream of ``output_kind=DELTA`` outputs, consumed concurrently on one
event loop that the backend owns. Every output is stamped with ``time.perf_counter()`` when it
reaches this process, and each token it carries gets that stamp: a request's first-token time
is its first stamp (TTFT counts from the call's start) and its end is its last stamp. The call
gives one phase mark: prefill runs from the call's start to the instant the *last* request
received its first token, decode from there to the call's end (``phase_split_method:
approximate``). Continuous batching mixes prefill and decode in one engine step, so the cut is
an instant, not a boundary between kinds of work. When every request fits in one wave
(``n <= max_num_seqs``) all prefills fall before the cut, and the prefill part also holds the
decode steps of requests that were admitted first (chunked prefill spreads long prompts over
several steps). When ``n > max_num_seqs``, later requests are admitted as earlier ones finish,
and their prefills fall in the "decode" part.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.metadata
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import models
from harness.backends import openai_server
from harness.backends.base import Backend, BatchCallback, GenerationOutput, Request, T
from harness.backends.common import library_problem, problem
from harness.backends.vllm import engine, generation, server
from harness.errors import BackendError, LlemError
from harness.schema.config import ExperimentConfig
from harness.schema.result import MemoryMetrics

if TYPE_CHECKING:
    from harness.load import StreamFn

_START_FIX = (
    "check the vllm: section and passthrough_kwargs (for vLLM they are engine arguments, "
    "passed to LLM(...)), the model directory, and free GPU memory"
)
LARGEST_DEFAULT_WAVE = 1024
"""The largest ``max_num_seqs`` vLLM picks by itself (its OpenAI server on large GPUs)."""
_GENERATE_FIX = "check that input_len + output_len fits the model's context (max_model_len)"


class VllmBackend(Backend):
    """vLLM's engine: ``LLM`` offline, or ``AsyncLLMEngine`` when latency is streamed.

    Args:
        config: the experiment; its ``vllm`` section may be absent (all vLLM defaults).
        device: must be "cuda:0": vLLM places its workers on the first visible GPUs itself.

    """

    name = "vllm"
    cuda_visible_form = "index"  # vLLM maps each CUDA_VISIBLE_DEVICES entry with int()

    def __init__(self, config: ExperimentConfig, device: str) -> None:
        super().__init__(config, device)
        self.settings = engine.settings(config)
        self._tokenizer = models.Tokenizer(config.model, config.load_revision)
        self._model_dir: Path | None = None
        self._vllm: Any = None
        self._llm: Any = None
        self._async_engine: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._environment: dict[str, str] | None = None
        self._engine_kwargs: dict[str, Any] | None = None
        self._calls = 0
        self._server: server.VllmServer | None = None
        self._client: Any = None
        self._served_model: dict[str, Any] = {}
        self._server_config: Any = None

    @property
    def through_server(self) -> bool:
        """Whether requests go to vLLM's OpenAI server (``load.client: openai_server``)."""
        return self.config.load.serving and self.config.load.client == "openai_server"

    @property
    def streaming(self) -> bool:
        """Whether the async engine runs: per-token times (``latency.streaming``) or serving."""
        return self.config.latency.streaming or self.config.load.serving

    # -- preflight and loading -------------------------------------------------------------

    def preflight(self) -> list[str]:
        """Return every problem: vLLM installed, model files (offline), device, arguments."""
        problems = []
        missing = library_problem("vllm", self.name, "vllm")
        if missing is not None:
            problems.append(missing)
        try:
            self._directory()
        except LlemError as error:
            problems.append(str(error))
        problems.extend(self._device_problems())
        problems.extend(self._passthrough_problems())
        return problems

    def gpus_needed(self) -> int:
        """Tensor x pipeline parallel size (the latter only through passthrough_kwargs)."""
        pipeline = self.config.passthrough_kwargs.get("pipeline_parallel_size", 1)
        return (self.settings.tensor_parallel_size or 1) * (
            pipeline if isinstance(pipeline, int) and pipeline > 0 else 1)

    def caches_across_requests(self) -> bool:
        """Whether vLLM's prefix cache is on: off unless the study turned it on."""
        return engine.prefix_caching(self.config)[0]

    def _device_problems(self) -> list[str]:
        if self.device == "cpu":
            return self._cpu_problems()
        if not self.device.startswith("cuda"):
            return [problem(
                f"vLLM runs on an NVIDIA GPU, or on cpu in its CPU build; the run's device is "
                f"'{self.device}'",
                "run on a machine with an NVIDIA GPU, or on cpu in the vllm-cpu image",
            )]
        cpu_only = sorted(name for name in engine.CPU_ENVIRONMENT
                          if getattr(self.settings, name) is not None)
        if cpu_only:
            return [problem(
                f"vllm.{', vllm.'.join(cpu_only)} apply to vLLM's CPU build only, but the run is "
                f"on {self.device}",
                "remove them from the vllm: section, or run on cpu in the vllm-cpu image",
            )]
        if self.device not in ("cuda", "cuda:0"):
            return [problem(
                f"vLLM places its workers on the first visible GPUs and cannot be pointed at "
                f"{self.device}",
                "make that GPU the first visible one (the run's GPU selection, or "
                "CUDA_VISIBLE_DEVICES) and use cuda:0",
            )]
        tensor_parallel = self.settings.tensor_parallel_size or 1
        if self.gpu_info and tensor_parallel > len(self.gpu_info):
            return [problem(
                f"vllm.tensor_parallel_size is {tensor_parallel}, but the run has "
                f"{len(self.gpu_info)} GPU(s)",
                f"select at least {tensor_parallel} GPUs, or lower vllm.tensor_parallel_size",
            )]
        return []

    def _cpu_problems(self) -> list[str]:
        """On cpu the installed vLLM must be its CPU build (vLLM's platform API says which)."""
        try:
            platforms = importlib.import_module("vllm.platforms")
        except ImportError:
            return []  # vLLM missing: library_problem reported it
        if engine.is_cpu_build(platforms):
            return []
        return [problem(
            "the run's device is cpu, but the installed vLLM is not its CPU build "
            f"(vLLM's platform: {type(platforms.current_platform).__name__})",
            "run in the vllm-cpu image (llem images build vllm-cpu), or on a GPU with the vllm "
            "image",
        )]

    def _passthrough_problems(self) -> list[str]:
        error = self._passthrough_error()
        return [] if error is None else [problem(error.message, error.fix or "")]

    def _passthrough_error(self) -> BackendError | None:
        conflicts = engine.passthrough_conflicts(self.config)
        if not conflicts:
            return None
        return BackendError(
            f"passthrough_kwargs {', '.join(conflicts)} would override what llem sets from the "
            "config",
            fix="set the model, revision, precision and random_seed fields and the vllm: "
            "section instead; passthrough_kwargs may only add engine arguments",
        )

    def load(self) -> None:
        """Start the engine on the checkpoint's local directory, offline.

        Raises:
            PreflightError: the model cannot be found offline.
            BackendError: vLLM is missing, rejected an argument, or failed to start.

        """
        model_dir = self._directory()
        conflict = self._passthrough_error()
        if conflict is not None:
            raise conflict
        self._tokenizer.tokenizer  # noqa: B018 - loaded now, so load time includes it
        self._vllm = self._import_vllm()
        kwargs = engine.engine_kwargs(self.config, model_dir)
        self._engine_kwargs = kwargs
        fix = f"{_START_FIX}; passthrough_kwargs given: {sorted(self.config.passthrough_kwargs)}"
        with engine.translated_errors("engine start", fix):
            if self.through_server:
                self._start_server(kwargs)
            elif self.streaming:
                self._start_async_engine(kwargs)
            else:
                self._llm = self._vllm.LLM(**kwargs)

    def _start_server(self, kwargs: dict[str, Any]) -> None:
        port = openai_server.free_port()
        self._server = server.VllmServer(server.server_command(kwargs, port), port)
        self._server.start()
        self._served_model = self._server.models()
        self._server_config = engine.config_view(self._server.vllm_config())
        self._client = openai_server.openai_client(self._server.base_url)
        self._loop = asyncio.new_event_loop()

    def _start_async_engine(self, kwargs: dict[str, Any]) -> None:
        engine_args = self._vllm.AsyncEngineArgs(**kwargs)
        self._async_engine = self._vllm.AsyncLLMEngine.from_engine_args(
            engine_args, usage_context=self._usage_context())
        # The engine binds its output handler to the loop of the first request; every call
        # must run on that same loop.
        self._loop = asyncio.new_event_loop()

    def _usage_context(self) -> Any:
        """The entry point whose defaults the async engine takes for unset settings.

        vLLM resolves unset ``max_num_seqs`` and ``max_num_batched_tokens`` by the engine's
        usage context, and ``AsyncLLMEngine.from_engine_args`` defaults to a generic one with
        smaller budgets than either real entry point. Serving in process stands for vLLM's
        OpenAI server, which its other client starts; streaming an offline workload stands for
        the ``LLM`` class of the non-streamed runs. Each gets that entry point's defaults, so
        neither a ``load.client`` nor a ``latency.streaming`` sweep changes the engine.
        """
        contexts = importlib.import_module("vllm.usage.usage_lib").UsageContext
        return (contexts.OPENAI_API_SERVER if self.config.load.serving
                else contexts.LLM_CLASS)

    def _import_vllm(self) -> Any:
        self._environment = engine.prepare_environment(self.config)
        with engine.translated_errors(
            "import",
            "run in the vllm image (llem run --runner docker; build it with llem images build "
            "vllm), or install vllm in this environment",
        ):
            return importlib.import_module("vllm")

    def unload(self) -> None:
        """Shut the engine down (its worker processes exit) and drop every reference to it."""
        llm, async_engine, loop = self._llm, self._async_engine, self._loop
        vllm_server, client = self._server, self._client
        self._llm = self._async_engine = self._loop = self._server = self._client = None
        try:
            with engine.translated_errors("shutdown", "check for leftover vLLM processes"):
                if llm is not None:
                    _shut_down_llm(llm)
                if async_engine is not None:
                    async_engine.shutdown()
                if client is not None and loop is not None:
                    loop.run_until_complete(client.close())
        finally:
            if vllm_server is not None:
                vllm_server.stop()
            if loop is not None:
                openai_server.close_loop(loop)
            gc.collect()

    def _directory(self) -> Path:
        if self._model_dir is None:
            self._model_dir = models.directory(self.config.model, self.config.load_revision)
        return self._model_dir

    # -- tokenizer -------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Tokenise text without special tokens (the model's own tokenizer, on the CPU)."""
        return self._tokenizer.encode(text)

    def vocab_ids(self) -> list[int]:
        """Return ordinary token ids below the checkpoint's ``vocab_size``, specials excluded."""
        return self._tokenizer.vocab_ids(models.vocab_size(self._directory()))

    # -- generation ------------------------------------------------------------------------

    def warmup_requests(self, requests: list[Request]) -> list[Request]:
        """Return one full engine wave: the first ``max_num_seqs`` requests.

        ``max_num_seqs`` as the study sets it, else as the engine (or the server's
        ``/server_info``) resolved it; where neither is known, at most
        :data:`LARGEST_DEFAULT_WAVE`, so that a long serving run's thousands of requests are
        not all one warmup batch.
        """
        wave = (self.settings.max_num_seqs or self._resolved("max_num_seqs")
                or min(len(requests), LARGEST_DEFAULT_WAVE))
        return list(requests[:wave])

    def generate(
        self, requests: list[Request], on_batch: BatchCallback | None = None
    ) -> GenerationOutput:
        """Generate exactly ``max_new_tokens`` per request, all submitted at once.

        Raises:
            BackendError: the engine is not loaded, failed, or did not produce the fixed
                length.

        """
        if not requests:
            return GenerationOutput(outputs=[])
        self._calls += 1
        with engine.translated_errors("generation", _GENERATE_FIX):
            result = self._generate(requests)
        if on_batch is not None:
            on_batch(len(result.outputs), len(requests))
        return result

    def _generate(self, requests: list[Request]) -> GenerationOutput:
        decoder = self.config.decoder
        if self._client is not None and self._loop is not None:
            outputs, mark = openai_server.generate_through(self._loop, self._stream_fn(),
                                                           requests, self._calls)
            return GenerationOutput(outputs=outputs, phase_marks=[mark])
        if self._async_engine is not None and self._loop is not None:
            outputs, mark = generation.generate_streaming(
                self._loop, self._async_engine, self._vllm, decoder, requests, self._calls
            )
            return GenerationOutput(outputs=outputs, phase_marks=[mark])
        if self._llm is None:
            raise BackendError("the engine is not loaded", fix="call load() before generating")
        return GenerationOutput(
            outputs=generation.generate_offline(self._llm, self._vllm, decoder, requests)
        )

    def serve(self, drive: Callable[[StreamFn], Coroutine[Any, Any, T]]) -> T:
        """Serving mode: run the load driver on the engine's event loop (in process).

        Raises:
            BackendError: the async engine is not loaded, or failed while serving.

        """
        stream = self._stream_fn()
        loop = self._loop
        assert loop is not None  # _stream_fn checked that the engine or the server runs
        with engine.translated_errors("serving", _GENERATE_FIX):
            served = loop.run_until_complete(drive(stream))
        if self._server is not None:
            self._server.check_running()  # a server that died mid-run fails the run
        return served

    def _stream_fn(self) -> StreamFn:
        if self._client is not None and self._loop is not None:
            return server.openai_stream(self._client, self.config.decoder,
                                        generation.decoding_kwargs(self.config.decoder))
        if self._async_engine is not None and self._loop is not None:
            return generation.serving_stream(self._async_engine, self._vllm,
                                             self.config.decoder)
        raise BackendError("neither the async engine nor the server is running",
                           fix="call load() with load.mode serving before serving")

    def synchronize(self) -> None:
        """Nothing to wait for: LLM.generate returns only after every token reached the host.

        The streaming path likewise returns after the last token arrived. Calling into CUDA
        here would initialise it in this process, which vLLM's workers must own.
        """

    # -- reporting -------------------------------------------------------------------------

    def effective_parameters(self) -> dict[str, Any]:
        """Engine settings as resolved by vLLM after load (as requested before), and the rest."""
        vllm_config = self._vllm_config()
        if vllm_config is not None and self.through_server:
            settings = engine.resolved_settings(vllm_config)
            source = ("resolved: read from the server's VllmConfig (/server_info, "
                      "VLLM_SERVER_DEV_MODE=1 in the server's environment)")
        elif vllm_config is not None:
            settings = engine.resolved_settings(vllm_config)
            source = "resolved: read from the engine's VllmConfig after construction"
        elif self.through_server and self._served_model:
            settings = engine.requested_settings(self.config)
            settings["max_model_len"] = self._served_model.get("max_model_len")
            source = ("requested: the engine runs in vLLM's OpenAI server process, whose "
                      "VllmConfig this process cannot read; max_model_len read back from the "
                      "server's /v1/models (None means vLLM's default)")
        else:
            settings = engine.requested_settings(self.config)
            source = "requested: the engine is not running (None means vLLM's default)"
        extra = {}
        if self.through_server:
            extra["server_command"] = (self._server.command if self._server is not None
                                       else server.server_command(self._planned_kwargs(), 0))
        return {
            "engine": self._engine_name(),
            **extra,
            "batching": "continuous",
            **settings,
            "settings_source": source,
            "cross_request_cache": self._cross_request_cache(settings),
            "precision": self.config.precision,
            "decoder_mode": self.config.decoder.mode,
            **generation.decoding_kwargs(self.config.decoder),
            "output_length": "fixed: min_tokens = max_tokens, ignore_eos=True",
            "detokenize": False,
            "seed": self.config.random_seed,
            "seed_scope": "engine (LLM seed=); requests carry no seed of their own",
            "device": self.device,
            "engine_kwargs": dict(self._engine_kwargs or self._planned_kwargs()),
            "engine_passthrough_kwargs": dict(self.config.passthrough_kwargs),
            "environment": dict(self._environment or engine.planned_environment(self.config)),
            "timing": self._timing(),
        }

    def _engine_name(self) -> str:
        if self.through_server:
            return f"OpenAI server ({server.MODULE})"
        return "AsyncLLMEngine" if self.streaming else "LLM"

    def _cross_request_cache(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Prefix caching as the engine runs it (resolved, else requested) and who chose it."""
        requested, source = engine.prefix_caching(self.config)
        enabled = settings.get("enable_prefix_caching")
        return {"setting": "enable_prefix_caching",
                "enabled": requested if enabled is None else enabled, "source": source}

    def _timing(self) -> str:
        if self.through_server:
            return (
                "serving: each request sent at its arrival to vLLM's OpenAI server on loopback "
                "as a streamed /v1/completions call with token ids; each chunk stamped when it "
                "reached the harness (docs/serving.md)"
            )
        if self.config.load.serving:
            return (
                "serving: each request submitted to AsyncLLMEngine at its arrival and streamed "
                "with DELTA outputs; each chunk stamped when it reached the harness "
                "(docs/serving.md)"
            )
        if self.streaming:
            return (
                "all requests submitted at once to AsyncLLMEngine, streamed with DELTA outputs; "
                "each token stamped when its output arrived; phase split approximate: prefill "
                "ends when the last request got its first token"
            )
        return (
            "all requests in one LLM.generate call; each request spans the call; "
            "no first-token times, so no phase split"
        )

    def _planned_kwargs(self) -> dict[str, Any]:
        try:
            model_dir = self._directory()
        except LlemError:
            model_dir = Path(self.config.model)
        return engine.engine_kwargs(self.config, model_dir)

    def _vllm_config(self) -> Any:
        if self._llm is not None:
            return getattr(getattr(self._llm, "llm_engine", None), "vllm_config", None)
        if self._async_engine is not None:
            return getattr(self._async_engine, "vllm_config", None)
        return self._server_config

    def _resolved(self, name: str) -> Any:
        vllm_config = self._vllm_config()
        return None if vllm_config is None else engine.resolved_settings(vllm_config)[name]

    def memory(self) -> MemoryMetrics | None:
        """None: the weights and KV cache live in vLLM's worker processes, not this one."""
        return None

    def parameter_counts(self) -> tuple[int, int]:
        """Return (all parameters, non-embedding parameters) from the safetensors headers."""
        return models.parameter_counts(self._directory())

    def versions(self) -> dict[str, str]:
        """Return the vllm, torch and transformers versions (read without touching CUDA)."""
        vllm = self._vllm if self._vllm is not None else self._import_vllm()
        found = {"vllm": str(vllm.__version__)}
        for name in ("torch", "transformers"):
            version = _library_version(name)
            if version is not None:
                found[name] = version
        return found

    def determinism(self) -> dict[str, Any]:
        """The engine-wide seed of vLLM (requests carry none of their own)."""
        return {"seed": self.config.random_seed, "seed_scope": "engine (LLM seed=)"}


def _shut_down_llm(llm: Any) -> None:
    # V1: the engine core runs in its own process behind a client that can shut it down.
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()


def _library_version(name: str) -> str | None:
    module = sys.modules.get(name)  # vLLM imports both; reading them here initialises nothing
    version = getattr(module, "__version__", None)
    if version is not None:
        return str(version)
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
