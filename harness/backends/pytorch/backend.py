"""The PyTorch/transformers backend: static batches through ``model.generate``.

Requests are cut into consecutive batches of ``pytorch.batch_size`` and left-padded; each
batch generates a fixed number of tokens with EOS ignored and is timed from inside
``generate`` (see :mod:`harness.backends.pytorch.generation`). Models load offline only
(``local_files_only``), from a local directory or the Hugging Face cache.

torch and transformers are imported inside methods only.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from typing import Any

from harness import models
from harness.backends.base import (
    Backend,
    BatchCallback,
    GenerationOutput,
    PhaseMark,
    Request,
    RequestOutput,
)
from harness.backends.common import importable
from harness.backends.pytorch import loading
from harness.backends.pytorch import preflight as checks
from harness.backends.pytorch.generation import BatchRun, decoding_kwargs, generate_batch
from harness.errors import BackendError, LlemError
from harness.schema.config import ExperimentConfig, PyTorchConfig
from harness.schema.result import MemoryMetrics

DEFAULT_BATCH_SIZE = 1
_MIB = 2**20
MULTI_DEVICE_MAPS = frozenset({"auto", "balanced", "balanced_low_0", "sequential"})
"""device_map strategies that spread a model over every GPU the run may use."""
CROSS_REQUEST_CACHE = {
    "setting": None,
    "enabled": False,
    "source": "none exists: transformers' generate starts every batch from an empty KV cache "
    "(llem passes none in), so no prompt token is served from an earlier request",
}
"""What ``effective_parameters`` records about cross-request KV caching (vLLM and TensorRT-LLM
record their setting here)."""


class PyTorchBackend(Backend):
    """Static batching with transformers' ``generate`` on one device (or a device_map).

    Args:
        config: the experiment; its ``pytorch`` section may be absent (all defaults).
        device: "cuda:N" or "cpu".

    """

    name = "pytorch"

    def __init__(self, config: ExperimentConfig, device: str) -> None:
        super().__init__(config, device)
        self.settings = config.pytorch or PyTorchConfig()
        self._tokenizer: Any = None
        self._model: Any = None
        self._model_source: models.ModelSource | None = None
        self._model_memory_bytes: int | None = None

    @property
    def batch_size(self) -> int:
        """Requests per static batch."""
        return self.settings.batch_size or DEFAULT_BATCH_SIZE

    @property
    def model(self) -> Any:
        """The loaded transformers model (for inspection; raises before ``load``)."""
        return self._require_model()

    # -- preflight and loading -------------------------------------------------------------

    def preflight(self) -> list[str]:
        """Return every problem: libraries, model files (offline), device."""
        problems = checks.library_problems(self.config, self.settings)
        try:
            models.locate(self.config.model, self.config.load_revision)
        except LlemError as error:
            problems.append(str(error))
        if importable("torch"):
            problems.extend(checks.device_problems(self.device, self.settings))
        return problems

    def load(self) -> None:
        """Load tokenizer and model onto the device, offline.

        Raises:
            PreflightError: the model cannot be found offline.
            BackendError: transformers or torch failed to load it.

        """
        self._model_source = models.locate(self.config.model, self.config.load_revision)
        self._require_tokenizer()
        self._model = loading.load_model(self.config, self.device, self._pad_token_id())
        self._record_load_memory()

    def _record_load_memory(self) -> None:
        if self._is_cuda():
            import torch

            self._model_memory_bytes = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._model_memory_bytes = loading.tensor_bytes(self._model)

    def unload(self) -> None:
        """Drop the model and return its device memory."""
        self._model = None
        self._model_memory_bytes = None
        gc.collect()
        if self._is_cuda():
            import torch

            torch.cuda.empty_cache()

    # -- tokenizer -------------------------------------------------------------------------

    def _require_tokenizer(self) -> Any:
        # Loaded on first use, so a dataset can be tokenised before the model is loaded.
        if self._tokenizer is None:
            self._tokenizer = models.load_tokenizer(self.config.model, self.config.load_revision)
        return self._tokenizer

    def encode(self, text: str) -> list[int]:
        """Tokenise text without special tokens (loads the tokenizer if needed)."""
        ids: list[int] = self._require_tokenizer().encode(text, add_special_tokens=False)
        return ids

    def vocab_ids(self) -> list[int]:
        """Return ordinary token ids: below the embedding size, special tokens excluded."""
        limit = None
        if self._model is not None:
            limit = self._model.get_input_embeddings().num_embeddings
        return models.ordinary_token_ids(self._require_tokenizer(), limit)

    def _pad_token_id(self) -> int:
        tokenizer = self._require_tokenizer()
        for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
            if token_id is not None:
                return int(token_id)
        return 0

    # -- generation ------------------------------------------------------------------------

    def warmup_requests(self, requests: list[Request]) -> list[Request]:
        """Return the first batch of the workload; with torch.compile, a batch of every shape.

        A static batch's shape is (rows, padded prompt width, tokens generated). Compiled
        code is specialised to shapes, so each shape the window has not seen in warmup would
        compile inside it: with ``torch_compile`` the set is the first batch of each distinct
        shape, in window order, which keeps a short last batch last so that ``generate`` cuts
        the set into exactly those batches. Without compilation a new shape costs nothing
        worth warming, and the first batch alone (the measurement's full shape) is returned.
        """
        batches = list(self._batches(requests))
        if not self.settings.torch_compile:
            return list(batches[0]) if batches else []
        by_shape: dict[tuple[int, int, int], list[Request]] = {}
        for batch in batches:
            by_shape.setdefault(_batch_shape(batch), batch)
        return [request for batch in by_shape.values() for request in batch]

    def generate(
        self, requests: list[Request], on_batch: BatchCallback | None = None
    ) -> GenerationOutput:
        """Generate exactly ``max_new_tokens`` per request in static batches (EOS ignored).

        Sampling is seeded with ``random_seed`` at the start of every call, so two calls over
        the same requests produce the same tokens.

        Raises:
            BackendError: generation failed or did not produce the fixed length.

        """
        import torch

        run = self._batch_run()
        torch.manual_seed(self.config.random_seed)
        outputs: list[RequestOutput] = []
        marks: list[PhaseMark] = []
        for batch in self._batches(requests):
            batch_outputs, mark = generate_batch(run, batch)
            outputs.extend(batch_outputs)
            marks.append(mark)
            if on_batch is not None:
                on_batch(len(outputs), len(requests))
        return GenerationOutput(outputs=outputs, phase_marks=marks, phases_separated=True,
                                latency_reference="batch_start")

    def _batch_run(self) -> BatchRun:
        # passthrough_kwargs first: they may add generate() options, never override the
        # decoding mode or the fixed length.
        return BatchRun(
            model=self._require_model(),
            generate_kwargs={**self.config.passthrough_kwargs, **self.decoding_kwargs()},
            pad_token_id=self._pad_token_id(),
            synchronize=self.synchronize,
            streaming=self.config.latency.streaming,
        )

    def _batches(self, requests: list[Request]) -> Iterator[list[Request]]:
        for first in range(0, len(requests), self.batch_size):
            yield requests[first : first + self.batch_size]

    def decoding_kwargs(self) -> dict[str, Any]:
        """Return the decoding arguments passed to ``generate``, every default resolved."""
        return decoding_kwargs(self.config.decoder)

    def synchronize(self) -> None:
        """Wait for queued CUDA work on every device the model uses; a no-op on CPU."""
        if not self._is_cuda():
            return
        import torch

        for device in self._cuda_devices():
            torch.cuda.synchronize(device)

    def gpus_needed(self) -> int | None:
        """One GPU, or every GPU of the run for a multi-device ``device_map`` strategy."""
        return None if self.settings.device_map in MULTI_DEVICE_MAPS else 1

    def device_uuids(self) -> list[str] | None:
        """UUIDs (as torch reports them) of the CUDA devices holding the model; [] on CPU."""
        if not self._is_cuda():
            return []
        import torch

        return [str(torch.cuda.get_device_properties(device).uuid)
                for device in self._cuda_devices()]

    def _is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def _cuda_devices(self) -> list[str]:
        device_map = getattr(self._model, "hf_device_map", None) or {}
        names = (_cuda_name(value) for value in device_map.values())
        return sorted({name for name in names if name is not None}) or [self.device]

    def _require_model(self) -> Any:
        if self._model is None:
            raise BackendError("the model is not loaded", fix="call load() before generating")
        return self._model

    # -- reporting -------------------------------------------------------------------------

    def effective_parameters(self) -> dict[str, Any]:
        """Backend parameters as actually used, every default resolved."""
        streaming = self.config.latency.streaming
        return {
            "batch_size": self.batch_size,
            "batching": "static",
            "precision": self.config.precision,
            "dtype": self._dtype_name(),
            "attn_implementation": self._attn_implementation(),
            "torch_compile": bool(self.settings.torch_compile),
            "quantization": loading.quantization(self.settings),
            "device": self.device,
            "device_map": self._effective_device_map(),
            "padding_side": "left",
            "pad_token_id": self._pad_token_id() if self._tokenizer is not None else None,
            "decoder_mode": self.config.decoder.mode,
            **self.decoding_kwargs(),
            "output_length": "fixed: min_new_tokens = max_new_tokens (EOS ignored)",
            "cross_request_cache": CROSS_REQUEST_CACHE,
            "seed": self.config.random_seed,
            "lora": self.config.lora.model_dump() if self.config.lora else None,
            "generate_passthrough_kwargs": dict(self.config.passthrough_kwargs),
            "model_source": self._model_source,
            "timing": "per-step stopping-criterion timestamps"
            + (", device synchronised at every step" if streaming else ""),
        }

    def _dtype_name(self) -> str:
        if self._model is not None:
            return str(self._model.dtype).removeprefix("torch.")
        return loading.TORCH_DTYPES[self.config.precision]

    def _attn_implementation(self) -> str | None:
        if self._model is not None:
            return getattr(self._model.config, "_attn_implementation", None)
        return self.settings.attn_implementation

    def _effective_device_map(self) -> Any:
        placed = getattr(self._model, "hf_device_map", None)
        if placed:
            return {name: str(device) for name, device in placed.items()}
        return loading.device_map(self.settings, self.device) or {"": self.device}

    def memory(self) -> MemoryMetrics | None:
        """Model memory after load and peak memory since (None before load)."""
        if self._model_memory_bytes is None:
            return None
        if self._is_cuda():
            return self._cuda_memory(self._model_memory_bytes)
        return MemoryMetrics(
            device="cpu",
            model_memory_mb=self._model_memory_bytes / _MIB,
            peak_inference_memory_mb=_peak_rss_bytes() / _MIB,
            method=(
                "model: parameter and buffer bytes; peak: process peak RSS from "
                "getrusage (whole process, includes libraries and loading); MiB"
            ),
        )

    def _cuda_memory(self, model_bytes: int) -> MemoryMetrics:
        import torch

        return MemoryMetrics(
            device="cuda",
            model_memory_mb=model_bytes / _MIB,
            peak_inference_memory_mb=torch.cuda.max_memory_allocated(self.device) / _MIB,
            method=(
                f"model: torch.cuda.memory_allocated on {self.device} after load; peak: "
                "torch.cuda.max_memory_allocated since load (tensors of this process); MiB"
            ),
        )

    def parameter_counts(self) -> tuple[int, int]:
        """Return (all parameters, all minus the input embedding and an untied lm_head)."""
        model = self._require_model()
        total = sum(parameter.numel() for parameter in model.parameters())
        embedding = model.get_input_embeddings().weight
        excluded = embedding.numel()
        output = model.get_output_embeddings()
        if output is not None and output.weight is not embedding:
            excluded += output.weight.numel()
        return int(total), int(total - excluded)

    def determinism(self) -> dict[str, Any]:
        """The deterministic switches of torch as they are now, and the sampling seed."""
        import os

        import torch

        return {
            "seed": self.config.random_seed,
            "seed_scope": "torch.manual_seed at the start of every generate call",
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        }

    def versions(self) -> dict[str, str]:
        """torch, transformers and tokenizers versions, from the libraries themselves."""
        import tokenizers
        import torch
        import transformers

        found = {
            "torch": str(torch.__version__),
            "transformers": str(transformers.__version__),
            "tokenizers": str(tokenizers.__version__),
        }
        if torch.version.cuda:
            found["torch_cuda"] = str(torch.version.cuda)
        cudnn = _cudnn_version(torch)
        if cudnn is not None:
            found["cudnn"] = cudnn
        return found


def _batch_shape(batch: list[Request]) -> tuple[int, int, int]:
    """(rows, padded prompt width, tokens generated) of one static batch."""
    width = max(len(request.input_ids) for request in batch)
    return len(batch), width, max(request.max_new_tokens for request in batch)


def _cudnn_version(torch: Any) -> str | None:
    """The cuDNN version torch loaded ("9.1.0"), None without cuDNN (CPU builds)."""
    try:
        encoded = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:  # a torch without cuDNN support raises instead of returning None
        return None
    if not encoded:
        return None
    # cuDNN 9 encodes major * 10000 + minor * 100 + patch; cuDNN 8 major * 1000 + minor * 100
    major, rest = (encoded // 10000, encoded % 10000) if encoded >= 90000 else (
        encoded // 1000, encoded % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _peak_rss_bytes() -> int:
    import resource  # POSIX only; the harness runs on Linux (and macOS for development)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _cuda_name(device: Any) -> str | None:
    if isinstance(device, int):
        return f"cuda:{device}"
    text = str(device)
    return text if text.startswith("cuda") else None
