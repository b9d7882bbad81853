"""What each backend accepts: one table, the only source of truth for the cross-checks.

The study loader, the dry run and the docs all read these tables; nothing else hard-codes
which precision or decoding mode a backend supports.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendRules:
    """What one backend accepts.

    Attributes:
        precisions: compute dtypes the backend can run.
        decoders: decoding modes the backend implements.
        lora: whether a ``lora:`` section is accepted.
        lora_fix: what to do instead when it is not.
        quantizations: weight-quantisation schemes of the backend section's ``quantization``
            field (empty: the section has none).
        quantized_precisions: compute precisions a quantisation scheme may run with.
        gpu_only: the backend runs on NVIDIA GPUs only (no CPU execution).
    """

    precisions: frozenset[str]
    decoders: frozenset[str]
    lora: bool = True
    lora_fix: str = ""
    quantizations: frozenset[str] = frozenset()
    quantized_precisions: frozenset[str] = frozenset()
    gpu_only: bool = False


PRECISIONS = ("fp32", "fp16", "bf16", "fp8", "int8", "int4")
DECODERS = ("greedy", "sampling", "beam")
BACKENDS = ("pytorch", "vllm", "tensorrt")

RULES: dict[str, BackendRules] = {
    "pytorch": BackendRules(
        precisions=frozenset({"fp32", "fp16", "bf16"}),
        decoders=frozenset({"greedy", "sampling", "beam"}),
    ),
    "vllm": BackendRules(
        precisions=frozenset({"fp32", "fp16", "bf16"}),
        # vLLM's beam search is a separate API (LLM.beam_search) outside SamplingParams.
        decoders=frozenset({"greedy", "sampling"}),
        # vLLM's QuantizationMethods names (model_executor/layers/quantization).
        quantizations=frozenset({"awq", "gptq", "fp8", "bitsandbytes", "compressed-tensors"}),
        quantized_precisions=frozenset({"fp16", "bf16"}),
        gpu_only=True,
    ),
    "tensorrt": BackendRules(
        precisions=frozenset(PRECISIONS),
        decoders=frozenset({"greedy", "sampling", "beam"}),
        # llem names for TensorRT-LLM QuantAlgo members (see harness.backends.tensorrt.build).
        quantizations=frozenset({"fp8", "int8_sq", "int8_weight_only", "int4_weight_only",
                                 "int4_awq"}),
        quantized_precisions=frozenset({"fp16", "bf16"}),
        gpu_only=True,
        lora=False,
        lora_fix=(
            "merge the adapter into the base weights first (peft: "
            "PeftModel.from_pretrained(base, adapter).merge_and_unload().save_pretrained(DIR)) "
            "and point model: at DIR"
        ),
    ),
}

# Precisions that are a quantisation scheme rather than a float compute dtype: they may not be
# combined with a weight-quantisation setting in the backend section.
QUANTISED_PRECISIONS = frozenset({"fp8", "int8", "int4"})
# bitsandbytes and most weight-only schemes compute in half precision.
HALF_PRECISIONS = frozenset({"fp16", "bf16"})


def allowed(values: frozenset[str] | tuple[str, ...]) -> str:
    """Render a set of allowed values in a stable, readable order."""
    order = {name: i for i, name in enumerate(PRECISIONS + DECODERS + BACKENDS)}
    return ", ".join(sorted(values, key=lambda v: (order.get(v, 99), v)))
