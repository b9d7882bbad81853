"""How the vLLM engine is started: its environment, its arguments, and what it resolved.

Nothing here imports vLLM. The engine arguments are built from the config alone, so they can be
recorded (and checked against vLLM's documented signatures) whether or not vLLM is installed;
the resolved settings are read from the engine's ``VllmConfig`` once it exists.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from harness.errors import BackendError, LlemError
from harness.schema.config import ExperimentConfig, VllmConfig

ENVIRONMENT: dict[str, str] = {
    # The harness process runs a power-sampling thread; forking a threaded process is unsafe,
    # and a forked worker would inherit any CUDA state. Workers are started fresh instead.
    "VLLM_WORKER_MULTIPROC_METHOD": "spawn",
    # Runs never phone home and never download.
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    # The harness tokenises in this process before vLLM starts its own; a process forked after
    # tokenizers' thread pool ran disables it with a warning. Off from the start, every run
    # tokenises the same way.
    "TOKENIZERS_PARALLELISM": "false",
    # vLLM's INFO logging prints every request and periodic statistics into the run's output.
    "VLLM_CONFIGURE_LOGGING": "1",
    "VLLM_LOGGING_LEVEL": "WARNING",
}
"""Environment vLLM reads at import time; each is set only where the user has not set it."""

VLLM_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
"""Config precision -> vLLM ``dtype`` argument."""

SECTION_ARGS = (
    "tensor_parallel_size",
    "gpu_memory_utilization",
    "enforce_eager",
    "quantization",
    "kv_cache_dtype",
    "max_num_seqs",
    "max_num_batched_tokens",
    "enable_prefix_caching",
    "enable_chunked_prefill",
    "block_size",
)
"""``vllm:`` section fields, passed under the same name, and only when set (except
``enable_prefix_caching``, which is always passed: see :func:`prefix_caching`)."""

PREFIX_CACHING_DEFAULT_SOURCE = (
    "llem default: off in measurement runs (vllm.enable_prefix_caching unset)"
)
PREFIX_CACHING_STUDY_SOURCE = "study: vllm.enable_prefix_caching"

OWN_ARGS = ("model", "tokenizer", "revision", "dtype", "seed")
"""Engine arguments llem derives from the config; passthrough_kwargs may not name them."""

RESOLVED_FIELDS: dict[str, tuple[str, str]] = {
    "dtype": ("model_config", "dtype"),
    "max_model_len": ("model_config", "max_model_len"),
    "quantization": ("model_config", "quantization"),
    "enforce_eager": ("model_config", "enforce_eager"),
    "block_size": ("cache_config", "block_size"),
    "gpu_memory_utilization": ("cache_config", "gpu_memory_utilization"),
    "kv_cache_dtype": ("cache_config", "cache_dtype"),
    "enable_prefix_caching": ("cache_config", "enable_prefix_caching"),
    "num_gpu_blocks": ("cache_config", "num_gpu_blocks"),
    "max_num_seqs": ("scheduler_config", "max_num_seqs"),
    "max_num_batched_tokens": ("scheduler_config", "max_num_batched_tokens"),
    "enable_chunked_prefill": ("scheduler_config", "enable_chunked_prefill"),
    "tensor_parallel_size": ("parallel_config", "tensor_parallel_size"),
    "pipeline_parallel_size": ("parallel_config", "pipeline_parallel_size"),
}
"""Recorded setting -> (part of ``VllmConfig``, attribute): what the engine actually runs with."""


CPU_ENVIRONMENT: dict[str, str] = {
    "cpu_kvcache_space_gib": "VLLM_CPU_KVCACHE_SPACE",
    "cpu_omp_threads_bind": "VLLM_CPU_OMP_THREADS_BIND",
}
"""``vllm:`` settings of vLLM's CPU build -> the environment variable vLLM reads them from."""


def cpu_settings(config: ExperimentConfig) -> dict[str, str]:
    """The CPU build's settings the study gives, as environment variables (unset ones left out)."""
    section = settings(config)
    return {variable: str(getattr(section, name)) for name, variable in CPU_ENVIRONMENT.items()
            if getattr(section, name) is not None}


def prepare_environment(config: ExperimentConfig | None = None) -> dict[str, str]:
    """Set vLLM's environment (before vLLM is imported); return what is in effect.

    :data:`ENVIRONMENT` only where the user has not set it; the study's CPU settings
    (:data:`CPU_ENVIRONMENT`) always, since the study is what the run records; and every CPU
    variable that is set is reported, whoever set it.
    """
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if config is not None:
        os.environ.update(cpu_settings(config))
    names = [*ENVIRONMENT, *(v for v in CPU_ENVIRONMENT.values() if v in os.environ)]
    return {name: os.environ[name] for name in names}


def planned_environment(config: ExperimentConfig | None = None) -> dict[str, str]:
    """What :func:`prepare_environment` would put in effect, without setting anything."""
    planned = {name: os.environ.get(name, value) for name, value in ENVIRONMENT.items()}
    for variable in CPU_ENVIRONMENT.values():
        if variable in os.environ:
            planned[variable] = os.environ[variable]
    if config is not None:
        planned.update(cpu_settings(config))
    return planned


def is_cpu_build(vllm_platforms: Any) -> bool:
    """Whether the installed vLLM is its CPU build, asked of vLLM's platform API.

    Args:
        vllm_platforms: the module ``vllm.platforms`` (its ``current_platform``).
    """
    platform = vllm_platforms.current_platform
    is_cpu = getattr(platform, "is_cpu", None)
    return bool(is_cpu()) if callable(is_cpu) else getattr(platform, "device_type", "") == "cpu"


def settings(config: ExperimentConfig) -> VllmConfig:
    """The ``vllm:`` section, or an all-defaults one when the config left it out."""
    return config.vllm or VllmConfig()


def prefix_caching(config: ExperimentConfig) -> tuple[bool, str]:
    """Whether the engine may serve prompt tokens from its prefix cache, and who decided.

    Off unless the study sets ``vllm.enable_prefix_caching``. vLLM's own default (on in the V1
    engine) would serve every full KV block of a prompt prefix seen before from cache, so the
    window would do less prefill than the workload claims, and less than the other backends
    do for the same workload.

    Returns:
        (enabled, source): the value passed to the engine and where it came from.

    """
    requested = settings(config).enable_prefix_caching
    if requested is None:
        return False, PREFIX_CACHING_DEFAULT_SOURCE
    return requested, PREFIX_CACHING_STUDY_SOURCE


def passthrough_conflicts(config: ExperimentConfig) -> list[str]:
    """Passthrough keys that would override what llem sets from the config (sorted)."""
    reserved = set(OWN_ARGS) | set(SECTION_ARGS)
    return sorted(reserved & set(config.passthrough_kwargs))


def engine_kwargs(config: ExperimentConfig, model_dir: Path) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM(...)`` (and ``AsyncEngineArgs(...)``), exactly.

    The model and tokenizer are the resolved local directory, so vLLM never looks anything up
    on the hub. ``vllm:`` fields that are unset are left out, so vLLM applies its own default
    (which can depend on the GPU) and the resolved value is recorded after construction; the
    exception is ``enable_prefix_caching``, always passed (:func:`prefix_caching`).
    ``disable_log_stats`` is what ``LLM`` sets by itself; giving it explicitly keeps the
    streaming engine equally quiet. Serving mode keeps statistics on, as vLLM's server runs by
    default: each request's ``RequestStateStats`` then carries its time in the scheduler's queue
    (the engine's periodic statistics log stays below the WARNING level llem sets).
    ``passthrough_kwargs`` come last, as further engine arguments (they must not name an
    argument listed in :data:`OWN_ARGS` or :data:`SECTION_ARGS`; see
    :func:`passthrough_conflicts`).
    """
    section = settings(config)
    kwargs: dict[str, Any] = {
        "model": str(model_dir),
        "tokenizer": str(model_dir),
        "revision": config.load_revision,
        "dtype": VLLM_DTYPES[config.precision],
        "seed": config.random_seed,
        "disable_log_stats": not config.load.serving,
    }
    for name in SECTION_ARGS:
        value = getattr(section, name)
        if value is not None:
            kwargs[name] = value
    kwargs["enable_prefix_caching"] = prefix_caching(config)[0]
    kwargs.update(config.passthrough_kwargs)
    return kwargs


def requested_settings(config: ExperimentConfig) -> dict[str, Any]:
    """The settings as the config asks for them (None: vLLM's default, not yet resolved)."""
    section = settings(config)
    requested: dict[str, Any] = dict.fromkeys(RESOLVED_FIELDS)
    requested.update({name: getattr(section, name) for name in SECTION_ARGS})
    requested["enable_prefix_caching"] = prefix_caching(config)[0]
    requested["dtype"] = VLLM_DTYPES[config.precision]
    requested.update(
        {name: value for name, value in config.passthrough_kwargs.items() if name in requested}
    )
    return requested


def resolved_settings(vllm_config: Any) -> dict[str, Any]:
    """The settings the engine runs with, read from its ``VllmConfig``.

    Each is read with ``getattr``, so an attribute that a vLLM version does not have is
    recorded as None instead of failing the run.
    """
    resolved = {
        name: plain(getattr(getattr(vllm_config, part, None), attribute, None))
        for name, (part, attribute) in RESOLVED_FIELDS.items()
    }
    if resolved["enable_chunked_prefill"] is None:
        # Older SchedulerConfigs keep the resolved flag under this name only.
        scheduler = getattr(vllm_config, "scheduler_config", None)
        resolved["enable_chunked_prefill"] = plain(
            getattr(scheduler, "chunked_prefill_enabled", None)
        )
    return resolved


def config_view(dumped: dict[str, Any] | None) -> Any:
    """A ``VllmConfig`` dumped to JSON (the server's ``/server_info``) as attributes again.

    Each part (``model_config``, ``cache_config``, ...) becomes an object whose attributes are
    its fields, so :func:`resolved_settings` reads it as it reads the engine's own config.
    None stays None.
    """
    if dumped is None:
        return None
    return SimpleNamespace(**{part: SimpleNamespace(**fields) if isinstance(fields, dict)
                              else fields for part, fields in dumped.items()})


def plain(value: Any) -> Any:
    """A JSON-friendly form of a config value: ``torch.bfloat16`` becomes ``"bfloat16"``.

    The same for a dtype the server dumped as the string ``"torch.bfloat16"``.
    """
    if isinstance(value, str):
        return value.removeprefix("torch.")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value).removeprefix("torch.")


@contextlib.contextmanager
def translated_errors(action: str, fix: str) -> Iterator[None]:
    """Turn whatever vLLM raises while doing ``action`` into a :class:`BackendError`."""
    try:
        yield
    except LlemError:
        raise
    except Exception as error:  # vLLM raises many types: ValueError, RuntimeError, engine errors
        raise BackendError(
            f"vLLM {action} failed: {type(error).__name__}: {error}", fix=fix
        ) from error
