"""The interface every inference backend implements.

The harness owns the protocol (phases, timing window, energy); a backend only loads a model,
generates a fixed amount of work, and reports what it actually ran with. Times are
``time.perf_counter()`` seconds, the same clock the harness uses for the window edges.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from harness.errors import BackendError
from harness.schema.config import ExperimentConfig
from harness.schema.result import EngineCacheRecord, GpuInfo, MemoryMetrics

T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    """One prompt, already tokenised.

    Attributes:
        request_id: position in the workload.
        input_ids: prompt token ids.
        max_new_tokens: tokens to generate; EOS is ignored, so exactly this many.
    """

    request_id: int
    input_ids: list[int]
    max_new_tokens: int


@dataclass
class RequestOutput:
    """What one request produced and when.

    Attributes:
        request_id: the request's id.
        input_tokens: prompt length.
        output_tokens: tokens generated for this request.
        start_s: the request's latency reference point (perf_counter seconds): its static
            batch's start, or its submission to an engine (``GenerationOutput.latency_reference``).
        end_s: when the request was finished for its caller: its last token arrived (streaming)
            or the call that returned it returned (a static batch returns all its rows at
            once); None when the backend cannot observe a per-request end (an offline engine
            returns every request at once).
        first_token_s: when its first token was produced (None if not observed).
        token_times_s: arrival time of every token (streaming only); tokens that arrived in
            one chunk share its time.
        chunk_times_s: arrival time of every streamed chunk (one or more tokens), in order.
        generated_positions: decode positions computed for this request, None when equal to
            ``output_tokens``; a static batch computes its longest row's length for every row.
        padding_tokens: prompt positions computed as padding for this request (left padding to
            its static batch's longest prompt).
        output_ids: the generated token ids, when the backend exposes them (lets a test or a
            user check the work done; never part of the result file).
        cached_input_tokens: prompt tokens whose KV came from a cross-request cache (vLLM's
            prefix cache) instead of being computed; 0 where no such cache exists; None where
            the backend does not report it.
    """

    request_id: int
    input_tokens: int
    output_tokens: int
    start_s: float
    end_s: float | None
    first_token_s: float | None = None
    token_times_s: list[float] | None = None
    output_ids: list[int] | None = None
    cached_input_tokens: int | None = None
    chunk_times_s: list[float] | None = None
    generated_positions: int | None = None
    padding_tokens: int = 0


@dataclass(frozen=True)
class PhaseMark:
    """Edges of one batch: prefill is [start_s, prefill_end_s), decode [prefill_end_s, end_s)."""

    start_s: float
    prefill_end_s: float
    end_s: float


@dataclass
class GenerationOutput:
    """Result of one ``generate`` call over a list of requests."""

    outputs: list[RequestOutput]
    phase_marks: list[PhaseMark] = field(default_factory=list)
    latency_reference: Literal["batch_start", "submission"] = "submission"
    """What every request's ``start_s`` is: its static batch's start, or its submission to the
    engine (all requests are submitted at the call's start)."""
    phases_separated: bool = False
    """True when every mark's prefill and decode are separated in time (static batches);
    False when an engine interleaves them and the marks are only instants (continuous
    batching)."""


@dataclass(frozen=True)
class StreamChunk:
    """One output of a streamed request: the tokens new since the previous one.

    Attributes:
        token_ids: the new token ids (may be empty: an output that carries no token).
        cached_tokens: prompt tokens the engine served from a cross-request cache (a count for
            the whole request, repeated on every output), None where not reported.
        engine_queued_s: time the request spent in the engine's own waiting queue before it
            was first scheduled, where the engine reports it (on any output; the last reported
            value counts), None where it does not.
    """

    token_ids: list[int]
    cached_tokens: int | None = None
    engine_queued_s: float | None = None


StreamFn = Callable[[Request, str], AsyncIterator[StreamChunk]]
"""Serving mode: submit one request to a running engine under a unique key; iterate its outputs
as they arrive. Raising ends that request as failed (the load driver records it, and goes
on)."""


BatchCallback = Callable[[int, int], None]
"""Called after each batch with (requests done, requests total): progress and liveness."""


class Backend(abc.ABC):
    """An inference backend. Heavy libraries are imported inside methods, never at import time.

    Args:
        config: the experiment.
        device: "cuda:N" or "cpu".

    Attributes:
        gpu_info: facts about the GPUs the run measures (from the energy source, before
            preflight); lets a backend learn e.g. the compute capability without touching CUDA.
        engine_cache_root: where built engines are cached (backends that build engines);
            None = the default location.
    """

    name: str = ""
    cuda_visible_form: str = "uuid"
    """How the run's CUDA view names its GPUs for this backend: ``uuid`` or ``index`` (integer
    indices in PCI bus order, for libraries that read CUDA_VISIBLE_DEVICES with ``int()``)."""

    def __init__(self, config: ExperimentConfig, device: str) -> None:
        self.config = config
        self.device = device
        self.gpu_info: list[GpuInfo] = []
        self.engine_cache_root: Path | None = None

    @abc.abstractmethod
    def preflight(self) -> list[str]:
        """Return every problem that would stop this backend (library, model, device)."""

    @abc.abstractmethod
    def load(self) -> None:
        """Load tokenizer and model onto the device."""

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """Tokenise text without special tokens."""

    @abc.abstractmethod
    def vocab_ids(self) -> list[int]:
        """Token ids a synthetic prompt may use (no special tokens)."""

    @abc.abstractmethod
    def warmup_requests(self, requests: list[Request]) -> list[Request]:
        """The warmup set: batches with the measurement's shapes.

        The first batch, or one batch of every distinct shape where the backend compiles per
        shape; the runner swaps their tokens for fresh ones.
        """

    @abc.abstractmethod
    def generate(
        self, requests: list[Request], on_batch: BatchCallback | None = None
    ) -> GenerationOutput:
        """Generate exactly ``max_new_tokens`` per request (EOS ignored)."""

    @abc.abstractmethod
    def synchronize(self) -> None:
        """Wait until the device has finished all queued work (window edges)."""

    @abc.abstractmethod
    def effective_parameters(self) -> dict[str, Any]:
        """Backend parameters as actually used, every default resolved."""

    @abc.abstractmethod
    def memory(self) -> MemoryMetrics | None:
        """Model and peak inference memory."""

    @abc.abstractmethod
    def parameter_counts(self) -> tuple[int, int]:
        """(all parameters, non-embedding parameters) of the loaded model."""

    @abc.abstractmethod
    def versions(self) -> dict[str, str]:
        """Library versions read from the libraries themselves (``__version__``)."""

    def gpus_needed(self) -> int | None:
        """How many of the run's GPUs this backend computes on; None means all of them.

        Only these are measured (the first that many of the GPUs the run may use).
        """
        return 1

    def determinism(self) -> dict[str, Any]:
        """Determinism settings in force, read from the library (seeds, deterministic modes)."""
        return {"seed": self.config.random_seed}

    def caches_across_requests(self) -> bool:
        """Whether a cache shared across requests (prefix cache, KV block reuse) is on."""
        return False

    def device_uuids(self) -> list[str] | None:
        """UUIDs of the CUDA devices that hold the loaded model, from the backend's library.

        None when the model lives in worker processes this process cannot inspect (vLLM,
        TensorRT-LLM); the harness then proves placement through NVML instead.
        """
        return None

    def unload(self) -> None:  # noqa: B027 - optional hook
        """Release the model."""

    def serve(self, drive: Callable[[StreamFn], Coroutine[Any, Any, T]]) -> T:
        """Serving mode: run ``drive`` on this backend's event loop with its stream function.

        ``drive`` receives a :data:`harness.load.StreamFn` that submits one request to the
        loaded engine (or its server) and yields its outputs as they arrive; this method runs
        the coroutine ``drive`` returns to completion and returns its result. Backends that
        cannot serve keep this default (the schema refuses ``load.mode: serving`` for them).
        """
        raise BackendError(f"backend {self.name} cannot serve requests that arrive over time",
                           fix="use load.mode offline, or backend vllm or tensorrt")

    def engine_cache(self) -> EngineCacheRecord | None:
        """How the engine was obtained (TensorRT-LLM); None for backends without engines."""
        return None
