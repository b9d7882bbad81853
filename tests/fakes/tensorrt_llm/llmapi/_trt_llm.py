"""The TensorRT-engine ``LLM`` (``_TrtLLM`` of tensorrt_llm/llmapi/llm.py, 0.17-1.2).

The library defines it in ``llm.py``; this fake keeps it in a module of its own so that the
post-removal layout (``tests/fakes/tensorrt_llm_layouts.py``) can drop it together with
``builder.py``. ``llm.py`` re-exports it while the release has the engine runtime.

"Building" writes an engine directory like the real builder's (config.json with ``version``,
``pretrained_config`` and ``build_config``, one ``rank<N>.engine`` per rank) and ``save`` copies
it, exactly as ``LLM.save`` does. ``LLM(model=<dir with config.json holding build_config>)``
loads such an engine without building.

The argument checks mirror the library's: unknown keyword arguments, prompts longer than
``max_input_len``, prompt + ``max_tokens`` beyond ``max_seq_len``, beams beyond
``max_beam_width``; run-time ``max_batch_size``/``max_num_tokens`` above the built ones raise
in 1.0 (TrtLlmArgs against the loaded engine's config) and, in 1.1-1.2 (unverified), are
clamped to the built ones with a warning. In 1.1-1.2 constructing it also logs a legacy warning,
once per process (unverified, text included: no such warning was found in the stored sources).
Both warnings go to the ``logging`` logger "tensorrt_llm".
"""

import dataclasses
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import tensorrt_llm
import tensorrt_llm.llmapi.llm as llm_module
from tensorrt_llm import _release
from tensorrt_llm.builder import BuildConfig
from tensorrt_llm.llmapi.llm import DTYPES, BaseLLM, _Args, _read_json, _tokenizer_eos
from tensorrt_llm.llmapi.llm_args import TRT_LLM_ARGS, KvCacheConfig, QuantConfig
from tensorrt_llm.sampling_params import SamplingParams

LOGGER = logging.getLogger("tensorrt_llm")
LEGACY_WARNING = ("The TensorRT-engine backend (tensorrt_llm._tensorrt_engine.LLM) is legacy and "
                  "will be removed; use the PyTorch backend (tensorrt_llm.LLM)")
"""The fake's wording (the library's text, if it has one, is unverified)."""

_CONFIG_TYPES = {"build_config": BuildConfig, "kv_cache_config": KvCacheConfig,
                 "quant_config": QuantConfig}
_RUNTIME_LIMITS = ("max_batch_size", "max_num_tokens")
_legacy_warned = False


class _TrtLLM(BaseLLM):
    def _setup(self, model: str, tokenizer: str | None, tensor_parallel_size: int, dtype: str,
               kwargs: dict) -> None:
        _warn_legacy_once()
        _validate_kwargs(kwargs, dtype)
        build_config = kwargs.get("build_config") or BuildConfig(**{
            name: kwargs[name] for name in ("max_batch_size", "max_num_tokens", "max_seq_len",
                                            "max_beam_width", "max_input_len")
            if kwargs.get(name)})
        # As validate_build_config_remaining: an unset run-time beam width comes from the
        # build_config given (or made up from defaults), before any engine is loaded.
        self.args = _Args(
            model=model, tokenizer=tokenizer, tensor_parallel_size=tensor_parallel_size,
            pipeline_parallel_size=kwargs.get("pipeline_parallel_size", 1), dtype=dtype,
            build_config=build_config, **_runtime_limits(kwargs, build_config),
            max_beam_width=kwargs.get("max_beam_width") or build_config.max_beam_width,
            kv_cache_config=kwargs.get("kv_cache_config") or KvCacheConfig(),
            quant_config=kwargs.get("quant_config") or QuantConfig())
        self._start()
        self._eos_id = _tokenizer_eos(tokenizer or model)
        source = Path(model)
        checkpoint = _read_json(source / "config.json")
        if "build_config" in checkpoint:
            self._load_engine(source, checkpoint)
            self.args.__dict__.update(_runtime_limits(kwargs, self.args.build_config))
        else:
            self._build(checkpoint)
        self._vocab_size = int(self._pretrained["vocab_size"])
        self._register()

    def _build(self, checkpoint: dict) -> None:
        llm_module.BUILDS += 1
        args = self.args
        build_config = dataclasses.replace(args.build_config)
        if build_config.max_seq_len is None:
            build_config.max_seq_len = llm_module.checkpoint_max_seq_len(checkpoint)
        args.build_config = build_config
        world = args.tensor_parallel_size * args.pipeline_parallel_size
        quant = args.quant_config
        self._pretrained = {
            "architecture": (checkpoint.get("architectures") or ["LlamaForCausalLM"])[0],
            "dtype": (checkpoint.get("dtype") or checkpoint.get("torch_dtype") or "float16")
            if args.dtype == "auto" else args.dtype,
            "vocab_size": int(checkpoint["vocab_size"]),
            "max_position_embeddings": checkpoint.get("max_position_embeddings"),
            "mapping": {"world_size": world, "tp_size": args.tensor_parallel_size,
                        "pp_size": args.pipeline_parallel_size},
            "quantization": {"quant_algo": _algo(quant.quant_algo),
                             "kv_cache_quant_algo": _algo(quant.kv_cache_quant_algo)},
        }
        self._workspace = tempfile.TemporaryDirectory(suffix="-llm-workspace")
        self._engine_dir: Path | None = Path(self._workspace.name) / "engine"
        self._engine_dir.mkdir()
        (self._engine_dir / "config.json").write_text(json.dumps({
            "version": tensorrt_llm.__version__,
            "pretrained_config": self._pretrained,
            "build_config": dataclasses.asdict(build_config),
        }, indent=2))
        for rank in range(world):
            (self._engine_dir / f"rank{rank}.engine").write_bytes(b"fake engine")

    def _load_engine(self, engine_dir: Path, engine: dict) -> None:
        mapping = engine["pretrained_config"]["mapping"]
        for name, key in (("tensor_parallel_size", "tp_size"),
                          ("pipeline_parallel_size", "pp_size")):
            if getattr(self.args, name) not in (1, mapping[key]):
                raise ValueError(f"{key} {getattr(self.args, name)} is not consistent with the "
                                 f"engine's {key} {mapping[key]}")
        if not (engine_dir / "rank0.engine").is_file():
            raise RuntimeError(f"no engine file in {engine_dir}")
        known = {f.name for f in dataclasses.fields(BuildConfig)}
        self.args.build_config = BuildConfig(**{k: v for k, v in engine["build_config"].items()
                                                if k in known})
        self._pretrained = engine["pretrained_config"]
        self._engine_dir = engine_dir
        llm_module.LOADS += 1

    def save(self, engine_dir: str) -> None:
        if self._engine_dir is None:
            raise RuntimeError("The engine is not built yet.")
        if self._engine_dir.absolute() != Path(engine_dir).absolute():
            shutil.copytree(self._engine_dir, engine_dir, dirs_exist_ok=True)

    def _check_arguments(self, prompt_len: int, params: SamplingParams) -> SamplingParams:
        build_config = self.args.build_config
        if prompt_len > build_config.max_input_len:
            raise ValueError(f"prompt length ({prompt_len}) exceeds max_input_len "
                             f"({build_config.max_input_len})")
        self._check_seq_len(prompt_len, params, build_config.max_seq_len)
        # the library checks best_of against the loaded engine's width, not the run-time one
        self._check_beam_width(params, build_config.max_beam_width)
        if params.n > build_config.max_batch_size:
            raise ValueError(f"SamplingParams.n ({params.n}) should not exceed max_batch_size")
        return params


def _warn_legacy_once() -> None:
    global _legacy_warned
    if _release.warns_legacy_engine() and not _legacy_warned:
        _legacy_warned = True
        LOGGER.warning(LEGACY_WARNING)


def _validate_kwargs(kwargs: dict, dtype: str) -> None:
    for key, value in kwargs.items():
        # BaseLLM.__init__ takes ``backend`` beside the args' fields (1.1-era llm.py)
        if key not in TRT_LLM_ARGS and key != "backend":
            raise ValueError(f"TrtLlmArgs got invalid argument: {key}")
        expected = _CONFIG_TYPES.get(key)
        if expected is not None and value is not None and not isinstance(value, expected):
            raise TypeError(f"{key} must be a {expected.__name__}, got {type(value).__name__}")
    if dtype not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}")


def _runtime_limits(kwargs: dict, build_config: BuildConfig) -> dict[str, int | None]:
    """The run-time ``max_batch_size``/``max_num_tokens`` (None when unset) against the built
    ones: above them, a ValueError (1.0, 1.1.0) or the built value with a warning (1.2)."""
    limits: dict[str, int | None] = {}
    for name in _RUNTIME_LIMITS:
        value, built = kwargs.get(name), getattr(build_config, name)
        if value is not None and value > built:
            message = (f"{name} [{value}] is greater than build_config.{name} [{built}] in "
                       f"build_config")
            if not _release.clamps_runtime_limits():
                raise ValueError(message)
            LOGGER.warning("%s; using %s", message, built)
            value = built
        limits[name] = value
    return limits


def _algo(value: Any) -> str | None:
    return None if value is None else str(value.value)
