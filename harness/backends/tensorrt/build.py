"""What makes a TensorRT-LLM engine: the ``LLM(...)`` build arguments and the engine cache key.

Both come from the same few functions, so the key cannot miss a field the build uses: every
value handed to the builder is also in :func:`cache_description`, and nothing that only
matters at run time is (the KV-cache memory fraction, sampling parameters, the workload).
KV-block reuse is a run-time setting too, but some versions change the engine for it, so it is
in the key (:func:`block_reuse`).

A setting the config leaves unset means TensorRT-LLM's own default: it is not passed, and the
key records it as ``None`` (the library version is in the key, so a changed default rebuilds).

tensorrt_llm is imported inside functions only, through :mod:`importlib`.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.backends.common import num_beams, problem
from harness.errors import BackendError
from harness.load.arrivals import length_bounds
from harness.schema.config import DecoderConfig, ExperimentConfig, TensorRtConfig
from harness.schema.result import EngineCacheRecord


@dataclass(frozen=True)
class PrecisionRow:
    """How one llem setting reaches TensorRT-LLM.

    Attributes:
        setting: ``precision`` (the config's compute precision) or ``quantization``
            (``tensorrt.quantization``).
        value: the llem value.
        dtype: the ``LLM(dtype=...)`` it gives; None leaves the dtype to ``precision``.
        quant_algo: the ``QuantAlgo`` member it selects, or None.
    """

    setting: Literal["precision", "quantization"]
    value: str
    dtype: str | None
    quant_algo: str | None


PRECISION_TABLE = (
    PrecisionRow("precision", "fp32", "float32", None),
    PrecisionRow("precision", "fp16", "float16", None),
    PrecisionRow("precision", "bf16", "bfloat16", None),
    # Quantised precisions: TensorRT-LLM keeps the checkpoint's own activation dtype ("auto").
    PrecisionRow("precision", "fp8", "auto", "FP8"),
    PrecisionRow("precision", "int8", "auto", "W8A16"),
    PrecisionRow("precision", "int4", "auto", "W4A16"),
    PrecisionRow("quantization", "fp8", None, "FP8"),
    PrecisionRow("quantization", "int8_sq", None, "W8A8_SQ_PER_CHANNEL"),
    PrecisionRow("quantization", "int8_weight_only", None, "W8A16"),
    PrecisionRow("quantization", "int4_weight_only", None, "W4A16"),
    PrecisionRow("quantization", "int4_awq", None, "W4A16_AWQ"),
)
"""The one mapping from llem precision and quantisation names to TensorRT-LLM's."""

BUILD_CONFIG_FIELDS = ("max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens",
                       "max_beam_width", "opt_batch_size", "opt_num_tokens")
"""``BuildConfig`` fields reported in the effective parameters (those the version has)."""

RUNTIME_LIMITS = ("max_batch_size", "max_num_tokens")
"""Build limits that ``LLM(...)`` also takes as run-time limits (never above the built ones)."""

_BUILD_LIMITS = ("max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens")

OWN_LLM_ARGS = ("model", "tokenizer", "backend", "build_config", "tensor_parallel_size",
                "pipeline_parallel_size", "dtype", "quant_config", "kv_cache_config",
                *RUNTIME_LIMITS, "max_beam_width")
"""``LLM(...)`` arguments llem derives from the config; ``passthrough_kwargs`` may not name
them (they would be replaced without a word)."""

PASSTHROUGH_FIX = ("set the tensorrt: section instead (e.g. tensorrt.enable_block_reuse, "
                   "kv_cache_free_gpu_memory_fraction, max_batch_size); passthrough_kwargs may "
                   "only add LLM arguments")

BLOCK_REUSE_DEFAULT_SOURCE = (
    "llem default: off in measurement runs (tensorrt.enable_block_reuse unset)"
)
BLOCK_REUSE_STUDY_SOURCE = "study: tensorrt.enable_block_reuse"


def _row(setting: str, value: str) -> PrecisionRow:
    return next(row for row in PRECISION_TABLE if (row.setting, row.value) == (setting, value))


def settings_of(config: ExperimentConfig) -> TensorRtConfig:
    """The config's ``tensorrt`` section, or an all-defaults one."""
    return config.tensorrt or TensorRtConfig()


def dtype(config: ExperimentConfig) -> str:
    """The ``LLM(dtype=...)`` for the config's precision."""
    return _row("precision", config.precision).dtype or "auto"


def quant_algo(config: ExperimentConfig) -> str | None:
    """The ``QuantAlgo`` member name the config selects, or None for no quantisation."""
    quantization = settings_of(config).quantization
    if quantization is not None:
        return _row("quantization", quantization).quant_algo
    return _row("precision", config.precision).quant_algo


def beam_width(decoder: DecoderConfig) -> int:
    """The engine's ``max_beam_width``: the number of beams for beam search, else 1."""
    if decoder.mode == "beam":
        return num_beams(decoder)
    return 1


def parallel_sizes(config: ExperimentConfig) -> tuple[int, int]:
    """(tensor parallel size, pipeline parallel size); unset means 1, as in ``LLM``."""
    settings = settings_of(config)
    return settings.tp_size or 1, settings.pp_size or 1


def build_config_values(config: ExperimentConfig) -> dict[str, int]:
    """The ``BuildConfig`` fields the config sets; unset limits are TensorRT-LLM's defaults."""
    settings = settings_of(config)
    values = {name: getattr(settings, name) for name in _BUILD_LIMITS}
    found = {name: value for name, value in values.items() if value is not None}
    found["max_beam_width"] = beam_width(config.decoder)
    return found


def runtime_limits(config: ExperimentConfig) -> dict[str, int]:
    """Run-time limits passed to every ``LLM(...)``, building or loading an engine.

    They repeat the built limits, so TensorRT-LLM's run-time defaults cannot contradict the
    engine (a default ``max_num_tokens`` above the built one is an error in some versions), and
    the executor reserves the beams that beam search needs when it loads a prebuilt engine.
    """
    settings = settings_of(config)
    limits = {name: getattr(settings, name) for name in RUNTIME_LIMITS}
    found: dict[str, int] = {name: value for name, value in limits.items() if value is not None}
    found["max_beam_width"] = beam_width(config.decoder)
    return found


def build_settings(config: ExperimentConfig) -> dict[str, Any]:
    """Keyword arguments for ``LLM(model=<checkpoint>, ...)`` that build the engine."""
    llmapi = importlib.import_module("tensorrt_llm.llmapi")
    values = build_config_values(config)
    tensor_parallel, pipeline_parallel = parallel_sizes(config)
    kwargs: dict[str, Any] = {
        "build_config": llmapi.BuildConfig(**values),
        "tensor_parallel_size": tensor_parallel,
        "pipeline_parallel_size": pipeline_parallel,
        "dtype": dtype(config),
        **runtime_settings(config),
    }
    algo = quant_algo(config)
    if algo is not None:
        kwargs["quant_config"] = llmapi.QuantConfig(quant_algo=getattr(llmapi.QuantAlgo, algo))
    return kwargs


def block_reuse(config: ExperimentConfig) -> tuple[bool, str]:
    """Whether the executor may reuse KV blocks across requests, and who decided.

    Off unless the study sets ``tensorrt.enable_block_reuse``. TensorRT-LLM's own default (on)
    would serve every full KV block of a prompt prefix seen before from cache, so the window
    would do less prefill than the workload claims. It is a run-time ``KvCacheConfig`` field,
    but it is handed to the builder too, and TensorRT-LLM versions whose LLM API arbitrates
    build options turn ``use_paged_context_fmha`` on in the engine when it is True (and refuse
    to load an engine without it): :func:`cache_description` keys on it.

    Returns:
        (enabled, source): the value passed to ``KvCacheConfig`` and where it came from.

    """
    requested = settings_of(config).enable_block_reuse
    if requested is None:
        return False, BLOCK_REUSE_DEFAULT_SOURCE
    return requested, BLOCK_REUSE_STUDY_SOURCE


def kv_cache_values(config: ExperimentConfig) -> dict[str, Any]:
    """``KvCacheConfig`` fields llem sets, in process and in ``trtllm-serve``'s options file.

    Always ``enable_block_reuse`` (:func:`block_reuse`); the memory fraction only when the
    config sets it (else TensorRT-LLM's default).
    """
    values: dict[str, Any] = {"enable_block_reuse": block_reuse(config)[0]}
    fraction = settings_of(config).kv_cache_free_gpu_memory_fraction
    if fraction is not None:
        values["free_gpu_memory_fraction"] = fraction
    return values


def runtime_settings(config: ExperimentConfig) -> dict[str, Any]:
    """Keyword arguments for every ``LLM(...)``: run-time limits and the KV-cache settings."""
    kwargs: dict[str, Any] = dict(runtime_limits(config))
    llmapi = importlib.import_module("tensorrt_llm.llmapi")
    kwargs["kv_cache_config"] = llmapi.KvCacheConfig(**kv_cache_values(config))
    return kwargs


def cache_description(config: ExperimentConfig, revision: str, trt_version: str,
                      compute_capability: str) -> dict[str, Any]:
    """Every field that makes the engine different, and nothing that only matters at run time.

    The key covers the runtime (always ``engine``: the PyTorch runtime never uses the engine
    cache). Adding that field changed every key once, together with the image pin's move to
    TensorRT-LLM 1.2.1, which rebuilds every engine anyway.

    Args:
        config: the experiment.
        revision: the checkpoint's resolved revision (``harness.models.resolved_revision``).
        trt_version: ``tensorrt_llm.__version__``.
        compute_capability: the GPU's, e.g. "9.0" ("unknown" without GPU facts).

    Returns:
        The description whose SHA-256 is the engine's cache key.

    """
    settings = settings_of(config)
    tensor_parallel, pipeline_parallel = parallel_sizes(config)
    return {
        "runtime": "engine",
        "model": config.model,
        "model_revision": revision,
        "precision": config.precision,
        "dtype": dtype(config),
        "quant_algo": quant_algo(config),
        "kv_cache_quant_algo": None,  # llem never sets one; recorded so the key says so
        "tensor_parallel_size": tensor_parallel,
        "pipeline_parallel_size": pipeline_parallel,
        **{name: getattr(settings, name) for name in _BUILD_LIMITS},
        "max_beam_width": beam_width(config.decoder),
        # The removed tensorrt.builder_opt_level, always unset: kept so that engines built
        # while it existed keep their key (docs/backends.md).
        "builder_opt_level": None,
        # Handed to LLM(...) with the build arguments; some versions build for it.
        "enable_block_reuse": block_reuse(config)[0],
        # Handed to LLM(...) with the build arguments, so they may change the engine.
        "passthrough_kwargs": dict(config.passthrough_kwargs),
        "tensorrt_llm_version": trt_version,
        "compute_capability": compute_capability,
    }


def read_engine_config(engine_dir: Path) -> dict[str, Any]:
    """An engine directory's config.json (``version``, ``pretrained_config``, ``build_config``).

    Raises:
        BackendError: the file is missing or not a JSON object.

    """
    path = engine_dir / "config.json"
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BackendError(f"cannot read the engine's {path}: {error}",
                           fix="point tensorrt.engine_dir at a directory written by "
                           "LLM.save() or trtllm-build") from error
    if not isinstance(loaded, dict):
        raise BackendError(f"{path} is not a JSON object",
                           fix="point tensorrt.engine_dir at a TensorRT-LLM engine directory")
    return loaded


def engine_problems(config: ExperimentConfig, engine_dir: Path) -> list[str]:
    """What stops a prebuilt engine from serving this workload (read from its config.json)."""
    if not (engine_dir / "config.json").is_file():
        return [problem(f"tensorrt.engine_dir {engine_dir} has no config.json",
                        "point it at a directory written by LLM.save() or trtllm-build, or "
                        "remove tensorrt.engine_dir to build (and cache) the engine")]
    try:
        built = read_engine_config(engine_dir).get("build_config") or {}
    except BackendError as error:
        return [str(error)]
    prompt, output = workload_lengths(config)
    # Run-time limits above the built ones raise in TensorRT-LLM 1.0 and are clamped with a
    # warning by later releases: either way the study would not run what it says, so they are
    # refused here, before the engine loads.
    needed = {"max_beam_width": beam_width(config.decoder),
              "max_input_len": prompt,
              "max_seq_len": prompt + output,
              **runtime_limits(config)}
    return [
        problem(f"the engine in {engine_dir} was built with {name} {built[name]}, but this "
                f"experiment needs {value}",
                f"rebuild the engine with {name} >= {value}, or change the experiment")
        for name, value in needed.items()
        if isinstance(built.get(name), int) and built[name] < value
    ]


def passthrough_error(config: ExperimentConfig, own: tuple[str, ...] = OWN_LLM_ARGS,
                      fix: str = PASSTHROUGH_FIX) -> BackendError | None:
    """The error for ``passthrough_kwargs`` that name an argument llem sets, or None.

    Args:
        config: the experiment.
        own: the ``LLM(...)`` arguments llem sets on this runtime (the engine runtime's by
            default; :data:`.pytorch_runtime.OWN_LLM_ARGS` for the PyTorch runtime).
        fix: the fix to name.

    """
    conflicts = sorted(set(own) & set(config.passthrough_kwargs))
    if not conflicts:
        return None
    return BackendError(f"passthrough_kwargs {', '.join(conflicts)} would be replaced by what "
                        "llem sets from the config", fix=fix)


DEFAULT_MAX_INPUT_LEN = 1024
"""``BuildConfig.max_input_len``'s default (0.17-1.2): an engine built without the setting
takes prompts up to this long and rejects longer ones at every request."""


def workload_lengths(config: ExperimentConfig) -> tuple[int, int]:
    """(longest prompt, longest output) the workload sends.

    The configured lengths, or the top of their range when ``load.lengths`` draws them
    (``load.length_range_ratio``).
    """
    load = config.load
    if load.lengths == "uniform" and load.length_range_ratio is not None:
        return (length_bounds(config.input_len, load.length_range_ratio)[1],
                length_bounds(config.output_len, load.length_range_ratio)[1])
    return config.input_len, config.output_len


def workload_problems(config: ExperimentConfig, model_limit: int | None) -> list[str]:
    """Build limits below what the workload needs (the engine would reject its prompts).

    Checked before anything is built, so that no engine that cannot serve the workload is built
    and cached: an unset ``max_input_len`` is TensorRT-LLM's default
    (:data:`DEFAULT_MAX_INPUT_LEN`); an unset ``max_seq_len`` is the model's maximum
    (``model_limit``: TensorRT-LLM's build infers it as its PyTorch runtime does, from
    ``max_position_embeddings`` and the RoPE scaling; None when the model's config is
    unreadable, which preflight reports on its own).
    """
    settings = settings_of(config)
    prompt, output = workload_lengths(config)
    problems = []
    if settings.max_seq_len is None and model_limit is not None and \
            prompt + output > model_limit:
        problems.append(problem(
            f"tensorrt.max_seq_len is unset, so TensorRT-LLM builds the engine for prompt + "
            f"output of at most {model_limit} tokens (the model's positions), but the workload "
            f"needs {prompt + output} (its longest prompt + output)",
            "shorten input_len or output_len, or set tensorrt.max_seq_len to at least "
            f"{prompt + output} if the model is known to hold longer sequences"))
    if settings.max_input_len is None and prompt > DEFAULT_MAX_INPUT_LEN:
        problems.append(problem(
            f"tensorrt.max_input_len is unset, so TensorRT-LLM builds the engine for prompts of "
            f"at most {DEFAULT_MAX_INPUT_LEN} tokens (its default), but the workload sends "
            f"prompts of {prompt}",
            f"set tensorrt.max_input_len to at least {prompt}"))
    checks = (("max_input_len", settings.max_input_len, prompt),
              ("max_seq_len", settings.max_seq_len, prompt + output))
    problems += [
        problem(f"tensorrt.{name} is {limit}, but the workload needs {needed} "
                "(its longest prompt" + (" + output" if name == "max_seq_len" else "") + ")",
                f"raise tensorrt.{name} to at least {needed}, or leave it unset")
        for name, limit, needed in checks
        if limit is not None and limit < needed
    ]
    return problems


def engine_parameters(config: ExperimentConfig, engine_config: dict[str, Any],
                      record: EngineCacheRecord | None, llm: Any) -> dict[str, Any]:
    """The engine runtime's effective parameters: where the engine came from and its build.

    Args:
        config: the experiment.
        engine_config: the engine's ``config.json``.
        record: where the engine came from (None before loading).
        llm: the in-process LLM (None through the server): an engine it built reports its own
            ``build_config``; otherwise the engine's ``config.json`` does.

    """
    pretrained = engine_config.get("pretrained_config") or {}
    mapping = pretrained.get("mapping") or {}
    quantization = pretrained.get("quantization") or {}
    tensor_parallel, pipeline_parallel = parallel_sizes(config)
    given = bool(settings_of(config).engine_dir)  # prebuilt: llem's build settings unused
    source = getattr(getattr(llm, "args", None), "build_config", None)
    if record is not None and record.hit is False and source is not None:
        built = {name: getattr(source, name) for name in BUILD_CONFIG_FIELDS
                 if hasattr(source, name)}
    else:
        written = engine_config.get("build_config") or {}
        built = {name: written[name] for name in BUILD_CONFIG_FIELDS if name in written}
    return {
        "engine_source": record.source if record else None,
        "engine_dir": record.engine_dir if record else None,
        "build_config": built,
        "tensor_parallel_size": mapping.get("tp_size", tensor_parallel),
        "pipeline_parallel_size": mapping.get("pp_size", pipeline_parallel),
        "dtype": None if given else dtype(config),
        "engine_dtype": pretrained.get("dtype"),
        "quant_algo": quantization.get("quant_algo", None if given else quant_algo(config)),
        "kv_cache_quant_algo": quantization.get("kv_cache_quant_algo"),
    }
