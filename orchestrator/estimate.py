"""Dry-run estimates: VRAM per GPU for each run, and the study's duration (both rough).

VRAM = weights (parameters x bytes per parameter) + KV cache (2 x layers x KV heads x head dim
x sequence length x batch x bytes) + overhead (CUDA context and activations: 1 GB + 10 % of the
weights), divided by tensor (and pipeline) parallelism. Model shapes come from ``config.json``
in the local model directory or the Hugging Face cache only; nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import models
from harness.schema.catalog import BY_NAME
from harness.schema.config import ExperimentConfig

BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
QUANT_BYTES = {"awq": 0.5, "gptq": 0.5, "bitsandbytes": 0.5, "fp8": 1.0,
               "compressed-tensors": 1.0, "int8_sq": 1.0, "int8_weight_only": 1.0,
               "int4_weight_only": 0.5, "int4_awq": 0.5}
CONTEXT_GB = 1.0
GB = 1e9


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs from a model's config.json."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool

    @property
    def parameters(self) -> int:
        """Parameters of a Llama-style decoder (embeddings and an untied head included)."""
        attention = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        mlp = 3 * self.hidden * self.intermediate
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * (attention + mlp) + embeddings


@dataclass(frozen=True)
class VramEstimate:
    """Estimated memory of one run per GPU (GB)."""

    weights_gb: float
    kv_cache_gb: float
    overhead_gb: float
    parallel: int

    @property
    def per_gpu_gb(self) -> float:
        """Total divided by tensor x pipeline parallelism."""
        return (self.weights_gb + self.kv_cache_gb + self.overhead_gb) / self.parallel


def find_config(model: str, revision: str | None = None, cwd: Path | None = None,
                cache_dir: Path | None = None) -> dict[str, Any] | None:
    """config.json of a local model directory or of ``model`` at ``revision`` in the HF cache.

    None when neither holds it; nothing is downloaded (see :func:`harness.models.read_config`).
    ``cwd``: the folder a relative path is taken from; without it (a loaded configuration,
    whose local paths are absolute) a relative name is a hub id, never a folder of the cwd.
    """
    return models.read_config(model, revision, cwd=cwd, cache_dir=cache_dir)


def shape_of(config_json: dict[str, Any]) -> ModelShape:
    """Read the shape from a transformers config (Llama-style names)."""
    hidden = int(config_json["hidden_size"])
    heads = int(config_json["num_attention_heads"])
    return ModelShape(
        layers=int(config_json["num_hidden_layers"]),
        hidden=hidden,
        heads=heads,
        kv_heads=int(config_json.get("num_key_value_heads") or heads),
        head_dim=int(config_json.get("head_dim") or hidden // heads),
        intermediate=int(config_json.get("intermediate_size") or 4 * hidden),
        vocab=int(config_json["vocab_size"]),
        tied=bool(config_json.get("tie_word_embeddings", False)),
    )


def batch_of(config: ExperimentConfig) -> int:
    """Sequences resident at once: the backend's batch limit, at most the prompt count."""
    memory = BY_NAME[config.backend].memory
    limit = getattr(config.section(), memory.batch_setting, None) or memory.default_batch
    return min(int(limit), config.n)


def _weight_bytes(config: ExperimentConfig) -> float:
    section = config.section()
    if getattr(section, "load_in_4bit", None):
        return 0.5
    if getattr(section, "load_in_8bit", None):
        return 1.0
    quantization = getattr(section, "quantization", None)
    return QUANT_BYTES.get(quantization or "", BYTES[config.precision])


def _kv_bytes(config: ExperimentConfig) -> float:
    kv_dtype = getattr(config.section(), "kv_cache_dtype", None)
    if kv_dtype and kv_dtype != "auto":
        return 1.0
    return min(BYTES[config.precision], 2.0) if config.precision != "fp32" else 4.0


def parallel_of(config: ExperimentConfig) -> int:
    """GPUs one model spans: the product of the backend's parallelism settings (unset = 1)."""
    section = config.section()
    product = 1
    for name in BY_NAME[config.backend].memory.parallel_settings:
        product *= getattr(section, name, None) or 1
    return product


def estimate_vram(config: ExperimentConfig, shape: ModelShape) -> VramEstimate:
    """Memory one run needs per GPU (see the module docstring for the formula)."""
    weights = shape.parameters * _weight_bytes(config) / GB
    sequence = config.input_len + config.output_len
    kv = (2 * shape.layers * shape.kv_heads * shape.head_dim * sequence * batch_of(config)
          * _kv_bytes(config) / GB)
    return VramEstimate(weights, kv, CONTEXT_GB + 0.1 * weights, parallel_of(config))


def estimate_run_s(config: ExperimentConfig, shape: ModelShape | None, on_gpu: bool) -> float:
    """A rough duration of one run (s).

    Start-up, load, warmup, and the work at an assumed rate: 2 x parameters x tokens at
    100 TFLOP/s on a GPU or 20 GFLOP/s on CPU. In serving mode the requests arrive over
    ``load.duration_s`` (or n / request_rate), and an engine that cannot keep up drains the
    rest after it: the longer of the two. An estimate, labelled as one wherever shown.
    """
    rate = 100e12 if on_gpu else 20e9
    parameters = shape.parameters if shape else 1e9
    load = config.load
    requests = config.n
    arrivals_s = 0.0
    if load.serving and load.request_rate:
        arrivals_s = load.duration_s or config.n / load.request_rate
        requests = round(arrivals_s * load.request_rate)
    tokens = requests * (config.input_len + config.output_len)
    work_s = max(2 * parameters * tokens / rate, arrivals_s)
    warmup_s = max(config.warmup.min_seconds,
                   config.warmup.n_warmup * work_s * batch_of(config) / max(requests, 1))
    return 10.0 + parameters * 2 / 2e9 + warmup_s + work_s
