"""The PyTorch/transformers backend: static batches through ``model.generate``.

Requests are cut into consecutive batches of ``pytorch.batch_size``, left-padded, and each
batch generates exactly as many tokens as its longest request asks for: ``min_new_tokens`` is
set equal to ``max_new_tokens``, which masks EOS until the end, so every configuration does the
same work whatever the model would have said.

Timing comes from inside ``generate``: a stopping criterion that never stops records the time
of every decoding step. transformers calls it once per step, right after the step's token has
been appended, so its first call marks the end of prefill (the batch's first token exists) and
the phase split is exact. On CUDA the device is synchronised before the first timestamp, and
before every timestamp when ``latency.streaming`` asks for per-token times.

torch and transformers are imported inside methods only.
"""

from __future__ import annotations

import gc
import importlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from harness.backends.base import (
    Backend,
    BatchCallback,
    GenerationOutput,
    PhaseMark,
    Request,
    RequestOutput,
)
from harness.backends.pytorch import preflight as checks
from harness.errors import BackendError, LlemError
from harness.schema.config import ExperimentConfig, PyTorchConfig
from harness.schema.result import MemoryMetrics

DEFAULT_BATCH_SIZE = 1
DEFAULT_NUM_BEAMS = 4
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0
DEFAULT_TOP_K = 0
"""Sampling defaults when the config leaves them unset: the plain distribution (top_k 0 = off),
the same on every backend, rather than whatever a model's generation_config suggests."""

TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
"""Config precision -> torch dtype name."""

_MIB = 2**20
_LENGTH_FIX = (
    "remove passthrough_kwargs that change the generation length (max_length, stop_strings, "
    "max_time, ...)"
)


class StepClock:
    """A stopping criterion that never stops and timestamps every decoding step.

    Args:
        synchronize: waits for the device (a no-op on CPU).
        sync_every_step: synchronise before every timestamp, not only the first one.

    """

    def __init__(self, synchronize: Callable[[], None], *, sync_every_step: bool) -> None:
        self.times_s: list[float] = []
        self._synchronize = synchronize
        self._sync_every_step = sync_every_step

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        """Record the time the newest token exists; return "not done" for every sequence."""
        import torch

        if self._sync_every_step or not self.times_s:
            self._synchronize()
        self.times_s.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


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
        self._model_source: checks.ModelSource | None = None
        self._model_memory_bytes: int | None = None

    @property
    def batch_size(self) -> int:
        """Requests per static batch."""
        return self.settings.batch_size or DEFAULT_BATCH_SIZE

    @property
    def model(self) -> Any:
        """The loaded transformers model (for inspection; raises before ``load``)."""
        return self._require_model()

    @property
    def quantization(self) -> str | None:
        """``bitsandbytes_8bit``, ``bitsandbytes_4bit`` or None."""
        if self.settings.load_in_8bit:
            return "bitsandbytes_8bit"
        if self.settings.load_in_4bit:
            return "bitsandbytes_4bit"
        return None

    # -- preflight -------------------------------------------------------------------------

    def preflight(self) -> list[str]:
        """Return every problem: libraries, model files (offline), device."""
        problems = checks.library_problems(self.config, self.settings)
        try:
            checks.resolve_model(self.config.model, self.config.revision)
        except LlemError as error:
            problems.append(str(error))
        if checks.importable("torch"):
            problems.extend(checks.device_problems(self.device, self.settings))
        return problems

    # -- loading ---------------------------------------------------------------------------

    def load(self) -> None:
        """Load tokenizer and model onto the device, offline.

        Raises:
            PreflightError: the model cannot be found offline.
            BackendError: transformers or torch failed to load it.

        """
        import torch

        self._model_source = checks.resolve_model(self.config.model, self.config.revision)
        self._require_tokenizer()
        model = self._from_pretrained(torch)
        if self._device_map() is None:
            model.to(self.device)
        model.eval()
        model.generation_config = self._neutral_generation_config(model)
        model = self._apply_lora(model)
        if self.settings.torch_compile:
            # generate() calls the module, which calls self.forward: compiling forward keeps
            # generate's own logic (cache, stopping) in Python.
            model.forward = torch.compile(model.forward)
        self._model = model
        self._record_load_memory(torch)

    def _from_pretrained(self, torch: Any) -> Any:
        from transformers import AutoModelForCausalLM

        try:
            return AutoModelForCausalLM.from_pretrained(
                self.config.model, **self._from_pretrained_kwargs(torch)
            )
        except (OSError, ValueError, ImportError, RuntimeError, KeyError, TypeError) as error:
            raise BackendError(
                f"loading model '{self.config.model}' failed: {error}",
                fix="check that the model directory or cache entry is complete and that its "
                "architecture is supported by this transformers version",
            ) from error

    def _from_pretrained_kwargs(self, torch: Any) -> dict[str, Any]:
        import transformers

        dtype_key = "dtype" if _version_at_least(transformers.__version__, 4, 56) else "torch_dtype"
        kwargs: dict[str, Any] = {
            "local_files_only": True,
            dtype_key: getattr(torch, TORCH_DTYPES[self.config.precision]),
        }
        if self.config.revision:
            kwargs["revision"] = self.config.revision
        if self.settings.attn_implementation:
            kwargs["attn_implementation"] = self.settings.attn_implementation
        if self.quantization:
            kwargs["quantization_config"] = self._bitsandbytes_config(torch)
        device_map = self._device_map()
        if device_map is not None:
            kwargs["device_map"] = device_map
        return kwargs

    def _bitsandbytes_config(self, torch: Any) -> Any:
        from transformers import BitsAndBytesConfig

        compute_dtype = getattr(torch, TORCH_DTYPES[self.config.precision])
        if self.settings.load_in_8bit:
            return BitsAndBytesConfig(load_in_8bit=True)  # type: ignore[no-untyped-call]
        return BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True, bnb_4bit_compute_dtype=compute_dtype
        )

    def _device_map(self) -> str | dict[str, str] | None:
        # None: load on the CPU, then move the whole model with .to(device) (no accelerate).
        if self.settings.device_map is not None:
            return self.settings.device_map
        if self.quantization:
            return {"": self.device}  # bitsandbytes quantises while placing the weights
        return None

    def _neutral_generation_config(self, model: Any) -> Any:
        # A model's generation_config may carry sampling defaults (temperature 0.6, top_p 0.9,
        # ...) that generate() would quietly merge in; keep only its special token ids so the
        # decoding is exactly what the config says.
        from transformers import GenerationConfig

        source = model.generation_config
        return GenerationConfig(  # type: ignore[no-untyped-call]
            bos_token_id=source.bos_token_id,
            eos_token_id=source.eos_token_id,
            pad_token_id=self._pad_token_id(),
        )

    def _apply_lora(self, model: Any) -> Any:
        if self.config.lora is None:
            return model
        peft = importlib.import_module("peft")  # optional; preflight reports it missing
        try:
            adapted = peft.PeftModel.from_pretrained(model, self.config.lora.adapter)
        except (OSError, ValueError) as error:
            raise BackendError(
                f"loading LoRA adapter '{self.config.lora.adapter}' failed: {error}",
                fix="point lora.adapter at a local adapter directory or a cached adapter id",
            ) from error
        return adapted.merge_and_unload() if self.config.lora.merged else adapted

    def _record_load_memory(self, torch: Any) -> None:
        if self._is_cuda():
            self._model_memory_bytes = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._model_memory_bytes = _tensor_bytes(self._model)

    def unload(self) -> None:
        """Drop the model and return its device memory."""
        self._model = None
        gc.collect()
        if self._is_cuda():
            import torch

            torch.cuda.empty_cache()

    # -- tokenizer -------------------------------------------------------------------------

    def _require_tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            kwargs: dict[str, Any] = {"local_files_only": True}
            if self.config.revision:
                kwargs["revision"] = self.config.revision
            try:
                tokenizer = AutoTokenizer.from_pretrained(self.config.model, **kwargs)
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise BackendError(
                    f"loading the tokenizer of '{self.config.model}' failed: {error}",
                    fix="check that the model directory or cache entry holds tokenizer files",
                ) from error
            tokenizer.padding_side = "left"
            self._tokenizer = tokenizer
        return self._tokenizer

    def encode(self, text: str) -> list[int]:
        """Tokenise text without special tokens (loads the tokenizer if needed)."""
        ids: list[int] = self._require_tokenizer().encode(text, add_special_tokens=False)
        return ids

    def vocab_ids(self) -> list[int]:
        """Ordinary token ids: below the embedding size, special and control tokens excluded."""
        tokenizer = self._require_tokenizer()
        special = set(tokenizer.all_special_ids)
        special.update(
            token_id
            for token_id, token in tokenizer.added_tokens_decoder.items()
            if getattr(token, "special", False)
        )
        limit = len(tokenizer)
        if self._model is not None:
            limit = min(limit, self._model.get_input_embeddings().num_embeddings)
        return [token_id for token_id in range(limit) if token_id not in special]

    def _pad_token_id(self) -> int:
        tokenizer = self._require_tokenizer()
        if tokenizer.pad_token_id is not None:
            return int(tokenizer.pad_token_id)
        if tokenizer.eos_token_id is not None:
            return int(tokenizer.eos_token_id)
        return 0

    # -- generation ------------------------------------------------------------------------

    def warmup_requests(self, requests: list[Request]) -> list[Request]:
        """Return the first batch of the workload: same shapes as the measurement."""
        return list(requests[: self.batch_size])

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

        self._require_model()
        torch.manual_seed(self.config.random_seed)
        outputs: list[RequestOutput] = []
        marks: list[PhaseMark] = []
        for batch in self._batches(requests):
            batch_outputs, mark = self._generate_batch(batch)
            outputs.extend(batch_outputs)
            marks.append(mark)
            if on_batch is not None:
                on_batch(len(outputs), len(requests))
        return GenerationOutput(outputs=outputs, phase_marks=marks, phase_split="exact")

    def _batches(self, requests: list[Request]) -> Iterator[list[Request]]:
        for first in range(0, len(requests), self.batch_size):
            yield requests[first : first + self.batch_size]

    def _generate_batch(self, batch: list[Request]) -> tuple[list[RequestOutput], PhaseMark]:
        length = max(request.max_new_tokens for request in batch)
        input_ids, attention_mask = self._pad_left(batch)
        clock = StepClock(self.synchronize, sync_every_step=self.config.latency.streaming)
        self.synchronize()
        start_s = time.perf_counter()
        sequences = self._run_generate(input_ids, attention_mask, length, clock)
        self.synchronize()
        end_s = time.perf_counter()
        new_tokens = sequences[:, input_ids.shape[1] :].tolist()
        _check_fixed_length(new_tokens, clock.times_s, length)
        outputs = [
            self._request_output(request, token_ids, start_s, end_s, clock.times_s)
            for request, token_ids in zip(batch, new_tokens, strict=True)
        ]
        return outputs, PhaseMark(start_s=start_s, prefill_end_s=clock.times_s[0], end_s=end_s)

    def _pad_left(self, batch: list[Request]) -> tuple[Any, Any]:
        import torch

        width = max(len(request.input_ids) for request in batch)
        pad_id = self._pad_token_id()
        rows = [[pad_id] * (width - len(r.input_ids)) + list(r.input_ids) for r in batch]
        masks = [[0] * (width - len(r.input_ids)) + [1] * len(r.input_ids) for r in batch]
        device = self._model.device
        return torch.tensor(rows, device=device), torch.tensor(masks, device=device)

    def _run_generate(self, input_ids: Any, attention_mask: Any, length: int, clock: Any) -> Any:
        import torch
        from transformers import StoppingCriteriaList

        kwargs = {
            **self.config.passthrough_kwargs,
            **self.decoding_kwargs(),
            "max_new_tokens": length,
            "min_new_tokens": length,  # masks EOS until the end: fixed work
            "pad_token_id": self._pad_token_id(),
            "stopping_criteria": StoppingCriteriaList([clock]),
        }
        try:
            with torch.inference_mode():
                return self._model.generate(
                    input_ids=input_ids, attention_mask=attention_mask, **kwargs
                )
        except RuntimeError as error:
            raise _generation_error(error) from error
        except (ValueError, TypeError) as error:
            raise BackendError(
                f"generate() rejected its arguments: {error}",
                fix="check decoder settings and passthrough_kwargs",
            ) from error

    def _request_output(
        self,
        request: Request,
        token_ids: list[int],
        start_s: float,
        end_s: float,
        step_times_s: list[float],
    ) -> RequestOutput:
        count = request.max_new_tokens
        times_s = step_times_s[:count]
        # A shorter request in a longer batch is done when its last asked-for token exists.
        last_s = end_s if count == len(step_times_s) else times_s[-1]
        return RequestOutput(
            request_id=request.request_id,
            input_tokens=len(request.input_ids),
            output_tokens=count,
            start_s=start_s,
            end_s=last_s,
            first_token_s=times_s[0],
            token_times_s=list(times_s) if self.config.latency.streaming else None,
            output_ids=token_ids[:count],
        )

    def decoding_kwargs(self) -> dict[str, Any]:
        """Return the decoding arguments passed to ``generate``, every default resolved."""
        decoder = self.config.decoder
        if decoder.mode == "sampling":
            return {
                "do_sample": True,
                "num_beams": 1,
                "temperature": decoder.temperature or DEFAULT_TEMPERATURE,
                "top_p": decoder.top_p if decoder.top_p is not None else DEFAULT_TOP_P,
                "top_k": decoder.top_k if decoder.top_k is not None else DEFAULT_TOP_K,
            }
        if decoder.mode == "beam":
            return {"do_sample": False, "num_beams": decoder.num_beams or DEFAULT_NUM_BEAMS}
        return {"do_sample": False, "num_beams": 1}

    def synchronize(self) -> None:
        """Wait for queued CUDA work on every device the model uses; a no-op on CPU."""
        if not self._is_cuda():
            return
        import torch

        for device in self._cuda_devices():
            torch.cuda.synchronize(device)

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
        return {
            "batch_size": self.batch_size,
            "batching": "static",
            "precision": self.config.precision,
            "dtype": self._dtype_name(),
            "attn_implementation": self._attn_implementation(),
            "torch_compile": bool(self.settings.torch_compile),
            "quantization": self.quantization,
            "device": self.device,
            "device_map": self._effective_device_map(),
            "padding_side": "left",
            "pad_token_id": self._pad_token_id() if self._tokenizer is not None else None,
            "decoder_mode": self.config.decoder.mode,
            **self.decoding_kwargs(),
            "output_length": "fixed: min_new_tokens = max_new_tokens (EOS ignored)",
            "seed": self.config.random_seed,
            "lora": self.config.lora.model_dump() if self.config.lora else None,
            "generate_passthrough_kwargs": dict(self.config.passthrough_kwargs),
            "model_source": self._model_source,
            "timing": "per-step stopping-criterion timestamps"
            + (", device synchronised every step" if self.config.latency.streaming else ""),
        }

    def _dtype_name(self) -> str:
        if self._model is not None:
            return str(self._model.dtype).removeprefix("torch.")
        return TORCH_DTYPES[self.config.precision]

    def _attn_implementation(self) -> str | None:
        if self._model is not None:
            return getattr(self._model.config, "_attn_implementation", None)
        return self.settings.attn_implementation

    def _effective_device_map(self) -> Any:
        placed = getattr(self._model, "hf_device_map", None)
        if placed:
            return {name: str(device) for name, device in placed.items()}
        return self._device_map() or {"": self.device}

    def memory(self) -> MemoryMetrics | None:
        """Model memory after load and peak memory since (None before load)."""
        if self._model is None or self._model_memory_bytes is None:
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
        """(all parameters, parameters minus the input embedding and an untied lm_head)."""
        model = self._require_model()
        total = sum(parameter.numel() for parameter in model.parameters())
        embedding = model.get_input_embeddings().weight
        excluded = embedding.numel()
        output = model.get_output_embeddings()
        if output is not None and output.weight is not embedding:
            excluded += output.weight.numel()
        return int(total), int(total - excluded)

    def versions(self) -> dict[str, str]:
        """torch, transformers and tokenizers versions from the libraries themselves."""
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
        return found


def _check_fixed_length(
    new_tokens: list[list[int]], step_times_s: list[float], length: int
) -> None:
    produced = len(new_tokens[0]) if new_tokens else 0
    if produced != length or len(step_times_s) != length:
        raise BackendError(
            f"generate() produced {produced} tokens in {len(step_times_s)} timed steps where "
            f"exactly {length} were asked for; the fixed-length contract is broken",
            fix=_LENGTH_FIX,
        )


def _generation_error(error: RuntimeError) -> BackendError:
    if "out of memory" in str(error).lower():
        return BackendError(
            f"out of memory while generating: {error}",
            fix="lower pytorch.batch_size, input_len or output_len, or use a smaller precision",
        )
    return BackendError(f"generation failed: {error}", fix="see the traceback in error.json")


def _tensor_bytes(model: Any) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    return int(sum(tensor.numel() * tensor.element_size() for tensor in tensors))


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


def _version_at_least(version: str, major: int, minor: int) -> bool:
    parts = version.split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (IndexError, ValueError):
        return True
