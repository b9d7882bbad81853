"""ExperimentConfig: one measurement point.

Validation here is pure: nothing reads the environment, touches files or the network. Whether
the model exists, the GPU is there or the dataset file is readable is checked by preflight.
"""

from __future__ import annotations

import hashlib
import json
import re
import typing
from pathlib import PurePath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from harness.schema.catalog import CATALOG
from harness.schema.rules import HALF_PRECISIONS, QUANTISED_PRECISIONS, RULES, allowed

Backend = Literal["pytorch", "vllm", "tensorrt"]
"""Backend names: the catalog's (:mod:`harness.schema.catalog`); a test keeps them equal."""
Precision = Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"]

BUILTIN_DATASETS = ("llem-prompts-v1",)
"""Prompt sets shipped with the harness (``harness/datasets/``)."""

CONTENT_DIGESTS = ("model_digest", "dataset_sha256")
"""Fields that pin the content of local inputs; left out of the hash while unset (as is
``lora.adapter_digest``, the LoRA adapter's)."""

ADDED_SECTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "tensorrt": {"runtime": "engine", "cuda_graphs": None, "cuda_graph_batch_sizes": None,
                 "attention_backend": None, "overlap_scheduler": None},
}
"""Backend-section fields added after results were first written, at their defaults: left out
of the hash, so a configuration written before them keeps its hash."""

REMOVED_SECTION_FIELDS: dict[str, dict[str, str]] = {
    "tensorrt": {
        "builder_opt_level": (
            "no TensorRT-LLM release llem runs (0.17-1.2, and none after the engine runtime's "
            "removal) has a builder optimisation level: BuildConfig has no such field, so the "
            "value could only be ignored. Remove tensorrt.builder_opt_level"),
    },
}
"""Backend-section fields that were removed, each with the message a config naming it gets.
Every configuration written while one existed had it unset: the hash puts it back as null, so
those configurations keep their hash."""

CROSS_CHECK = "llem_cross_check"
"""Pydantic error type of a rejected value combination (a study skips these, it does not fail)."""

# Names of secrets, not of token counts: "hf_token" is a credential, "max_num_tokens" is not.
_CREDENTIAL_KEY = re.compile(
    r"^(hf_|access_|auth_|use_auth_|bearer_)?token$|api_?key|secret|passw(or)?d|credential"
)
_COMMIT = re.compile(r"[0-9a-f]{40}")
_CREDENTIAL_VALUE = re.compile(r"^(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{20,})$")


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, never silently ignored.

    ``inf``, ``-inf`` and ``nan`` (a passthrough value) are dumped as themselves (JSON
    ``Infinity``, ``-Infinity``, ``NaN``, which Python's and pydantic's JSON readers accept),
    not as null: the run receives the value written, and the configuration hash tells it apart
    from null. Finite values dump as before.
    """

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class DecoderConfig(Strict):
    """How tokens are chosen. Sampling and beam parameters are only valid in their own mode."""

    mode: Literal["greedy", "sampling", "beam"] = Field(
        "greedy", description="greedy (argmax), sampling (temperature/top_p/top_k) or beam."
    )
    temperature: float | None = Field(
        None, gt=0, description="Sampling temperature (sampling only; backend default 1.0)."
    )
    top_p: float | None = Field(
        None, gt=0, le=1, description="Nucleus sampling mass (sampling only; default 1.0)."
    )
    top_k: int | None = Field(
        None, ge=0, description="Keep the k most likely tokens, 0 = off (sampling only)."
    )
    num_beams: int | None = Field(
        None, ge=2, description="Beam width (beam only; default 4)."
    )

    @model_validator(mode="after")
    def _params_match_mode(self) -> DecoderConfig:
        sampling_set = [
            name for name in ("temperature", "top_p", "top_k") if getattr(self, name) is not None
        ]
        if sampling_set and self.mode != "sampling":
            raise PydanticCustomError(
                CROSS_CHECK,
                "decoder.{field} applies to mode 'sampling', not '{mode}'",
                {"field": sampling_set[0], "mode": self.mode},
            )
        if self.num_beams is not None and self.mode != "beam":
            raise PydanticCustomError(
                CROSS_CHECK,
                "decoder.num_beams applies to mode 'beam', not '{mode}'",
                {"mode": self.mode},
            )
        return self


class WarmupConfig(Strict):
    """Warmup before the measurement window; excluded from every metric."""

    n_warmup: int = Field(5, ge=0, description="Full-length batches run before measuring.")
    min_seconds: float = Field(
        60.0,
        ge=0,
        description=(
            "Keep the device under load at least this long (s) so the window opens at thermal "
            "steady state. Below 60 s the result carries a warmup_cut_short warning."
        ),
    )
    until_stable: bool = Field(
        False, description="Continue until every GPU meets the steady-state rule: temperature "
        "and per-batch power slopes flat over the last 120 s, four checks 10 s apart "
        "(docs/methodology.md)."
    )
    max_seconds: float = Field(
        600.0, gt=0, description="Upper bound on warmup time (s) with until_stable."
    )

    @model_validator(mode="after")
    def _bounds(self) -> WarmupConfig:
        if self.max_seconds < self.min_seconds:
            raise PydanticCustomError(
                CROSS_CHECK,
                "warmup.max_seconds ({max}) is below warmup.min_seconds ({min})",
                {"max": self.max_seconds, "min": self.min_seconds},
            )
        return self


class BaselineConfig(Strict):
    """Idle power measured before the model loads."""

    enabled: bool = Field(True, description="Measure idle power per GPU before loading.")
    duration_s: float = Field(30.0, gt=0, description="Idle measurement length (s).")
    cache_ttl_s: float = Field(
        3600.0, ge=0, description="Reuse a cached baseline of the same GPU this long (s)."
    )


class EnergyConfig(Strict):
    """Where energy comes from; exactly one source per run."""

    backend: Literal["auto", "nvml", "zeus", "codecarbon", "none"] = Field(
        "auto", description="auto = NVML when NVIDIA GPUs are visible, else none (with warning)."
    )
    sample_interval_ms: int = Field(
        100, ge=10, le=10_000, description="Power/temperature sampling period (ms)."
    )
    phase_split: Literal["auto", "prefill_pass", "window_edges", "off"] = Field(
        "auto",
        description=(
            "How prefill and decode energy are separated: window_edges (the window's counter "
            "at static batches' phase edges, only when every phase lasts >= 5 s), "
            "prefill_pass (a measured prefill-only pass after the window, decode by "
            "difference), auto (window_edges when valid, else prefill_pass), off."
        ),
    )
    prefill_pass_min_s: float = Field(
        10.0, ge=0, description="Repeat the prefill-only pass until it lasts this long (s)."
    )


class LatencyConfig(Strict):
    """Per-request latency detail."""

    streaming: bool = Field(
        False,
        description=(
            "Measure TTFT and ITL per request. Off by default: streaming perturbs the "
            "measurement; it is part of the config hash."
        ),
    )


ARRIVALS = ("poisson", "gamma", "constant")
"""Arrival processes of serving mode (docs/serving.md)."""

SERVING_CLIENTS = ("in_process", "openai_server")
"""How serving mode reaches the engine: its async API in the harness process, or the engine's
own OpenAI-compatible server started in the same container on loopback."""


class LoadConfig(Strict):
    """How requests reach the engine: all at once (offline), or arriving over time (serving).

    Serving fields apply to ``mode: serving`` only; setting one in offline mode is an error.
    """

    mode: Literal["offline", "serving"] = Field(
        "offline", description="offline: the whole workload submitted at once (a batch job). "
        "serving: requests arrive over time at request_rate, each streamed, and energy is "
        "taken over the steady-state window only (after ramp_up_s, before the drain).")
    request_rate: float | None = Field(
        None, gt=0, description="serving: mean arrival rate (requests/s); required. Sweep it "
        "to draw the J/token and latency curve against load.")
    arrival: Literal["poisson", "gamma", "constant"] = Field(
        "poisson", description="serving: arrival process. poisson (exponential gaps), gamma "
        "(gaps with shape burstiness: < 1 burstier, > 1 more regular than Poisson), constant "
        "(equal gaps).")
    burstiness: float | None = Field(
        None, gt=0, description="serving, arrival gamma only: the gamma shape of the gaps "
        "(1 = Poisson). Default 1.")
    max_concurrency: int | None = Field(
        None, ge=1, description="serving: at most this many requests in flight; an arrival "
        "beyond it waits in the client (its queueing delay). Unset: no limit.")
    duration_s: float | None = Field(
        None, gt=0, description="serving: arrivals continue this long (s), and the request "
        "count follows from the arrivals; unset: n requests arrive.")
    ramp_up_s: float = Field(
        0.0, ge=0, description="serving: arrivals of the first ramp_up_s seconds fill the "
        "engine and are left out of the window and of every serving figure.")
    seed: int | None = Field(
        None, description="serving: seed of the arrival times and drawn lengths (default: "
        "random_seed).")
    lengths: Literal["fixed", "uniform"] = Field(
        "fixed", description="fixed: every synthetic request has input_len and output_len "
        "tokens. uniform: each drawn uniformly within length_range_ratio of them (synthetic "
        "dataset only; a .jsonl gives each prompt its own max_new_tokens).")
    length_range_ratio: float | None = Field(
        None, gt=0, lt=1, description="lengths uniform: lengths are drawn from "
        "[len x (1 - r), len x (1 + r)]; required with uniform.")
    client: Literal["in_process", "openai_server"] = Field(
        "in_process", description="serving: in_process (the engine's async API in the "
        "harness process) or openai_server (the engine's own OpenAI-compatible server, "
        "started in the same container on loopback, streamed over HTTP).")

    @model_validator(mode="after")
    def _mode_fields(self) -> LoadConfig:
        if self.mode == "offline":
            serving_only = [name for name in SERVING_ONLY if getattr(self, name) !=
                            LoadConfig.model_fields[name].default]
            if serving_only:
                raise PydanticCustomError(
                    CROSS_CHECK, "load.{field} applies to load.mode serving, not offline; "
                    "set load.mode: serving or remove it", {"field": serving_only[0]})
        elif self.request_rate is None:
            raise PydanticCustomError(
                CROSS_CHECK, "load.mode serving needs load.request_rate (requests/s), e.g. "
                "load: {{mode: serving, request_rate: 4}}", {})
        elif self.duration_s is not None and self.ramp_up_s >= self.duration_s:
            # Known from the config alone, so refused before a model is loaded (with n
            # requests the span depends on the drawn arrivals: the run finds it when it
            # schedules them).
            raise PydanticCustomError(
                CROSS_CHECK, "load.ramp_up_s ({ramp_up_s} s) leaves no steady-state window "
                "within load.duration_s ({duration_s} s): lower ramp_up_s or raise "
                "duration_s", {"ramp_up_s": f"{self.ramp_up_s:g}",
                                 "duration_s": f"{self.duration_s:g}"})
        if self.burstiness is not None and self.arrival != "gamma":
            raise PydanticCustomError(
                CROSS_CHECK, "load.burstiness applies to load.arrival gamma, not '{arrival}'",
                {"arrival": self.arrival})
        if (self.lengths == "uniform") != (self.length_range_ratio is not None):
            raise PydanticCustomError(
                CROSS_CHECK, "load.lengths uniform and load.length_range_ratio go together: "
                "set both (e.g. lengths: uniform, length_range_ratio: 0.5) or neither", {})
        return self

    @property
    def serving(self) -> bool:
        """Whether requests arrive over time (``mode: serving``)."""
        return self.mode == "serving"


SERVING_ONLY = ("request_rate", "arrival", "burstiness", "max_concurrency", "duration_s",
                "ramp_up_s", "seed", "client")
"""``load:`` fields that mean something only in serving mode."""


class SloConfig(Strict):
    """Latency targets of serving mode: a request meeting all that are set counts to goodput."""

    ttft_ms: float | None = Field(
        None, gt=0, description="Time to first token target (ms), counted from arrival.")
    tpot_ms: float | None = Field(
        None, gt=0, description="Time per output token target (ms).")


class PyTorchConfig(Strict):
    """PyTorch/transformers knobs. Unset means the backend's own default (recorded)."""

    batch_size: int | None = Field(None, ge=1, description="Static batch size (default 1).")
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] | None = Field(
        None, description="Attention kernel (default: transformers' choice, usually sdpa)."
    )
    torch_compile: bool | None = Field(None, description="Wrap the model in torch.compile.")
    load_in_8bit: bool | None = Field(None, description="bitsandbytes 8-bit weights.")
    load_in_4bit: bool | None = Field(None, description="bitsandbytes 4-bit weights.")
    device_map: str | None = Field(
        None, description="transformers device_map (default: the first selected device)."
    )


class VllmConfig(Strict):
    """vLLM engine knobs. Unset means vLLM's own default (recorded)."""

    max_num_seqs: int | None = Field(None, ge=1, description="Max sequences per step.")
    max_num_batched_tokens: int | None = Field(None, ge=1, description="Max tokens per step.")
    tensor_parallel_size: int | None = Field(None, ge=1, description="GPUs per model.")
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="Fraction of GPU memory vLLM may take."
    )
    enable_prefix_caching: bool | None = Field(
        None,
        description=(
            "Serve prompt prefixes seen before from cached KV blocks, across requests. Unset = "
            "off in measurement runs (vLLM's own default is on); the value used is recorded."
        ),
    )
    enable_chunked_prefill: bool | None = Field(None, description="Split long prefills.")
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] | None = Field(
        None, description="KV-cache element type."
    )
    quantization: Literal["awq", "gptq", "fp8", "bitsandbytes", "compressed-tensors"] | None = (
        Field(None, description="Weight quantisation scheme.")
    )
    enforce_eager: bool | None = Field(None, description="Disable CUDA graphs.")
    block_size: int | None = Field(None, ge=1, description="KV-cache block size (tokens).")
    cpu_kvcache_space_gib: int | None = Field(
        None, ge=1,
        description=(
            "vLLM's CPU build only: host memory for the KV cache, in GiB "
            "(VLLM_CPU_KVCACHE_SPACE). Unset = vLLM's own sizing, recorded."
        ),
    )
    cpu_omp_threads_bind: str | None = Field(
        None, min_length=1,
        description=(
            "vLLM's CPU build only: the cores its OpenMP threads are bound to, e.g. '0-7' or "
            "'auto' (VLLM_CPU_OMP_THREADS_BIND). Unset = vLLM's default, recorded."
        ),
    )


TensorRtRuntime = Literal["engine", "pytorch"]
"""TensorRT-LLM's runtimes (docs/backends.md): its TensorRT engines, or its PyTorch runtime."""

TENSORRT_ENGINE_ONLY = ("quantization", "engine_dir")
"""``tensorrt`` settings of the engine runtime only (they build or pick an engine)."""

TENSORRT_PYTORCH_ONLY = ("cuda_graphs", "cuda_graph_batch_sizes", "attention_backend",
                         "overlap_scheduler")
"""``tensorrt`` settings of the PyTorch runtime only."""


class TensorRtConfig(Strict):
    """TensorRT-LLM build and runtime knobs. Unset means TensorRT-LLM's default (recorded).

    ``runtime`` picks which of TensorRT-LLM's runtimes runs: ``engine`` builds (or loads) a
    TensorRT engine through the engine cache; ``pytorch`` runs TensorRT-LLM's PyTorch runtime on
    the checkpoint (no build). The limits, parallelism and KV-cache settings apply to both;
    the others to one runtime only (:data:`TENSORRT_ENGINE_ONLY`,
    :data:`TENSORRT_PYTORCH_ONLY`), and setting one for the other runtime is an error.
    """

    runtime: TensorRtRuntime = Field(
        "engine",
        description=(
            "engine: TensorRT engines, built and cached by llem (TensorRT-LLM 0.17-1.2); "
            "pytorch: TensorRT-LLM's PyTorch runtime on the checkpoint (1.0 and later; the "
            "only one after TensorRT-LLM removed its engine runtime). Never switched by llem: "
            "a runtime the installed TensorRT-LLM lacks fails preflight."
        ),
    )
    max_batch_size: int | None = Field(None, ge=1, description="Engine max batch size.")
    max_input_len: int | None = Field(None, ge=1, description="Engine max input length.")
    max_seq_len: int | None = Field(None, ge=1, description="Engine max input+output length.")
    max_num_tokens: int | None = Field(None, ge=1, description="Engine max tokens per step.")
    tp_size: int | None = Field(None, ge=1, description="Tensor parallelism.")
    pp_size: int | None = Field(None, ge=1, description="Pipeline parallelism.")
    quantization: Literal["fp8", "int8_sq", "int8_weight_only", "int4_weight_only", "int4_awq"] | (
        None
    ) = Field(None, description="Quantisation algorithm.")
    kv_cache_free_gpu_memory_fraction: float | None = Field(
        None, gt=0, le=1, description="Free GPU memory given to the KV cache."
    )
    enable_block_reuse: bool | None = Field(
        None,
        description=(
            "Reuse KV-cache blocks of prompt prefixes seen before, across requests "
            "(KvCacheConfig(enable_block_reuse=...)). Unset = off in measurement runs "
            "(TensorRT-LLM's own default is on); the value used is recorded. Part of the "
            "engine cache key: some TensorRT-LLM versions build a different engine for it."
        ),
    )
    engine_dir: str | None = Field(None, description="Use this prebuilt engine (no build).")
    cuda_graphs: bool | None = Field(
        None, description="runtime pytorch: capture decode steps in CUDA graphs "
        "(cuda_graph_config; TensorRT-LLM's default is on). The value used is recorded.")
    cuda_graph_batch_sizes: list[int] | None = Field(
        None, min_length=1, description="runtime pytorch: batch sizes to capture "
        "(CudaGraphConfig.batch_sizes); unset = TensorRT-LLM's list.")
    attention_backend: Literal["TRTLLM", "FLASHINFER", "VANILLA"] | None = Field(
        None, description="runtime pytorch: attention kernels (attn_backend; TensorRT-LLM's "
        "default TRTLLM).")
    overlap_scheduler: bool | None = Field(
        None, description="runtime pytorch: overlap the host's scheduling of step n+1 with "
        "the GPU's step n (disable_overlap_scheduler = not this; TensorRT-LLM's default on).")

    @model_validator(mode="before")
    @classmethod
    def _removed_settings(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, message in REMOVED_SECTION_FIELDS["tensorrt"].items():
                if name in data:
                    raise PydanticCustomError("llem_removed_setting", message)
        return data

    @model_validator(mode="after")
    def _runtime_settings(self) -> TensorRtConfig:
        other = TENSORRT_ENGINE_ONLY if self.runtime == "pytorch" else TENSORRT_PYTORCH_ONLY
        named = [name for name in other if getattr(self, name) is not None]
        if named:
            runtime = "engine" if self.runtime == "pytorch" else "pytorch"
            raise PydanticCustomError(
                "llem_tensorrt_runtime",
                "tensorrt.{names} belong to runtime {runtime}, but tensorrt.runtime is {chosen}; "
                "remove them or set tensorrt.runtime: {runtime}",
                {"names": ", ".join(named), "runtime": runtime, "chosen": self.runtime})
        if self.cuda_graph_batch_sizes is not None and (
                self.cuda_graphs is False or min(self.cuda_graph_batch_sizes) < 1):
            raise PydanticCustomError(
                "llem_tensorrt_cuda_graphs",
                "tensorrt.cuda_graph_batch_sizes must be positive and needs CUDA graphs on; "
                "fix the sizes or remove cuda_graphs: false", {})
        return self


class LoraConfig(Strict):
    """A LoRA adapter applied to the model."""

    adapter: str = Field(description="Adapter id or local directory (a relative path is "
                         "relative to the study file).")
    adapter_digest: str | None = Field(
        None, description="Content identity of a local adapter directory, filled in by llem "
        "run: 'local-files-sha256:' and SHA-256 over every file's relative path and SHA-256 "
        "(hidden files left out); part of the configuration hash. Null for a hub adapter id, "
        "which is not pinned: its hash does not change when the adapter's repository does.")
    merged: bool = Field(False, description="Merge into the weights before measuring.")


class ExperimentConfig(Strict):
    """One measurement point: a model, a backend, its settings and a workload."""

    model: str = Field(min_length=1, description="Hugging Face id or local model directory.")
    revision: str | None = Field(None, description="Model revision (branch, tag or commit).")
    model_digest: str | None = Field(
        None, description="Content identity of the model, filled in by llem run; part of the "
        "configuration hash. A local directory: 'local-files-sha256:' and SHA-256 over every "
        "file's relative path and SHA-256 (hidden files left out). A hub id at a branch or tag "
        "(or none: main): the commit the host's Hugging Face cache holds for it, which the runs "
        "load. Null for a hub id at a commit, and for a hub model not yet in the cache.")
    backend: Backend = Field(description="Inference backend.")
    precision: Precision = Field("bf16", description="Compute dtype.")
    dataset: str = Field(
        "synthetic",
        description=(
            "'synthetic' (exact input_len tokens, seeded), a built-in prompt set "
            f"({', '.join(BUILTIN_DATASETS)}) or a path to a .jsonl file (a relative path "
            "is relative to the study file)."
        ),
    )
    dataset_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the .jsonl dataset's bytes, filled in by llem run (set it to "
        "pin the content); part of the configuration hash, and a run refuses a file whose "
        "content differs.")
    n: int = Field(100, ge=1, description="Number of prompts measured.")
    input_len: int = Field(
        128, ge=1, description="Prompt length in tokens (synthetic) or truncation limit."
    )
    output_len: int = Field(
        128, ge=1, description="Generated tokens per prompt; EOS is ignored (fixed work)."
    )
    random_seed: int = Field(42, description="Seed for synthetic prompts and sampling.")
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)
    warmup: WarmupConfig = Field(default_factory=WarmupConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    energy: EnergyConfig = Field(default_factory=EnergyConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    load: LoadConfig = Field(default_factory=LoadConfig)
    slo: SloConfig = Field(default_factory=SloConfig)
    pytorch: PyTorchConfig | None = None
    vllm: VllmConfig | None = None
    tensorrt: TensorRtConfig | None = None
    lora: LoraConfig | None = None
    passthrough_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra keyword arguments handed to the backend as they are (recorded).",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, data: Any) -> Any:
        problem = find_credential(data)
        if problem:
            raise PydanticCustomError(
                "llem_credential",
                "{path} looks like a credential; credentials are never config. Remove it and "
                "set HF_TOKEN in the environment instead",
                {"path": problem},
            )
        return data

    @model_validator(mode="before")
    @classmethod
    def _dataset_kind(cls, data: Any) -> Any:
        if isinstance(data, dict):
            dataset = data.get("dataset", "synthetic")
            if isinstance(dataset, str) and not _dataset_ok(dataset):
                raise PydanticCustomError(
                    "llem_dataset",
                    "dataset {value} is not known; allowed: synthetic, {builtin}, or a path "
                    "ending in .jsonl",
                    {"value": repr(dataset), "builtin": ", ".join(BUILTIN_DATASETS)},
                )
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> ExperimentConfig:
        problems = cross_check(self)
        if problems:
            raise PydanticCustomError(CROSS_CHECK, "{problems}", {"problems": "; ".join(problems)})
        return self

    def section(self) -> PyTorchConfig | VllmConfig | TensorRtConfig:
        """The backend section, or an all-defaults one when the config left it out."""
        section = getattr(self, self.backend)
        if section is not None:
            return section  # type: ignore[no-any-return]
        return SECTION_MODELS[self.backend]()

    @property
    def load_revision(self) -> str | None:
        """The revision a run loads: the commit ``model_digest`` pinned, else ``revision``.

        A hub model at a branch or tag (or none: the default branch) is pinned by the study
        loader to the commit the host's cache held; loading that commit, not the branch as it
        is when the run starts, keeps every run of the configuration on the weights it hashed.
        """
        if self.model_digest is not None and _COMMIT.fullmatch(self.model_digest):
            return self.model_digest
        return self.revision

    def canonical_json(self) -> str:
        """The canonical JSON form that the config hash is taken over.

        A backend section that sets nothing (``pytorch: {}``) is the backend's defaults, the
        same measurement as no section: both are written as no section, which keeps the hash
        of every configuration written without one as it was. An unset content digest (also
        ``lora.adapter_digest``) is left out, so configurations without local inputs keep the
        hash they had before digests existed. The default ``load:`` (offline) and an empty
        ``slo:`` are left out too, so every configuration written before serving mode keeps its
        hash. A ``.jsonl`` dataset with its digest, and a LoRA
        adapter directory with its digest, are identified by that digest and their file name,
        not where they lie: the same bytes after a project moved (another mount point, another
        host) are the same configuration. A local model directory is still identified by its
        absolute path beside its digest (changing that would move the hash of every
        configuration with a local model).
        """
        data = self.model_dump(mode="json")
        if getattr(self, self.backend) == SECTION_MODELS[self.backend]():
            data[self.backend] = None
        if self.dataset_sha256 is not None:
            data["dataset"] = PurePath(self.dataset).name
        if self.lora is not None and self.lora.adapter_digest is not None:
            data["lora"]["adapter"] = PurePath(self.lora.adapter).name
        for name in CONTENT_DIGESTS:
            if data[name] is None:
                del data[name]
        for section, defaults in ADDED_SECTION_DEFAULTS.items():
            if isinstance(data.get(section), dict):
                for name, default in defaults.items():
                    if data[section].get(name, default) == default:
                        data[section].pop(name, None)
        for section, removed in REMOVED_SECTION_FIELDS.items():
            if isinstance(data.get(section), dict):
                data[section].update(dict.fromkeys(removed))
        for name, model in (("load", LoadConfig), ("slo", SloConfig)):
            if getattr(self, name) == model():
                del data[name]
        if data["lora"] is not None and data["lora"]["adapter_digest"] is None:
            del data["lora"]["adapter_digest"]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @property
    def measurement_config_hash(self) -> str:
        """First 16 hex digits of SHA-256 over the canonical JSON dump."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]


def _section_model(name: str) -> type[PyTorchConfig | VllmConfig | TensorRtConfig]:
    annotation = ExperimentConfig.model_fields[name].annotation
    model = next(arg for arg in typing.get_args(annotation) if isinstance(arg, type)
                 and issubclass(arg, BaseModel))
    return typing.cast("type[PyTorchConfig | VllmConfig | TensorRtConfig]", model)


SECTION_MODELS = {entry.section: _section_model(entry.section) for entry in CATALOG}
"""Backend name -> its section model (read by the study loader and the docs generator).

Which backends exist is the catalog's (:mod:`harness.schema.catalog`); each one's typed
section is the field of :class:`ExperimentConfig` named after it."""


def _dataset_ok(dataset: str) -> bool:
    return dataset == "synthetic" or dataset in BUILTIN_DATASETS or dataset.endswith(".jsonl")


def cross_check(config: ExperimentConfig) -> list[str]:
    """Return every value combination the backend tables reject (empty when valid)."""
    rules = RULES[config.backend]
    problems: list[str] = []
    for other in RULES:
        if other != config.backend and getattr(config, other) is not None:
            problems.append(
                f"section '{other}' does not apply to backend '{config.backend}'; "
                f"remove it or set backend: {other}"
            )
    if config.precision not in rules.precisions:
        problems.append(
            f"precision '{config.precision}' is not supported by {config.backend}; "
            f"allowed: {allowed(rules.precisions)}"
        )
    if config.decoder.mode not in rules.decoders:
        problems.append(
            f"decoder.mode '{config.decoder.mode}' is not supported by {config.backend}; "
            f"allowed: {allowed(rules.decoders)}"
        )
    if config.lora is not None and not rules.lora:
        problems.append(f"lora is not supported by {config.backend}: {rules.lora_fix}")
    problems.extend(_quantisation_checks(config))
    problems.extend(_load_checks(config))
    if (config.tensorrt is not None and config.tensorrt.runtime == "pytorch"
            and config.precision in QUANTISED_PRECISIONS):
        problems.append(
            f"precision '{config.precision}' quantises while building a TensorRT engine; "
            "TensorRT-LLM's PyTorch runtime takes quantisation from the checkpoint: use a "
            "pre-quantised checkpoint with precision bf16 or fp16, or tensorrt.runtime: engine")
    return problems


def _load_checks(config: ExperimentConfig) -> list[str]:
    """Serving mode: a backend that serves, the client it offers, SLOs and lengths."""
    rules = RULES[config.backend]
    load = config.load
    problems: list[str] = []
    if load.serving and not rules.serving_clients:
        problems.append(f"load.mode serving is not supported by {config.backend}: "
                        f"{rules.serving_fix}")
    elif load.serving and load.client not in rules.serving_clients:
        problems.append(f"load.client '{load.client}' is not supported by {config.backend}; "
                        f"allowed: {', '.join(sorted(rules.serving_clients))}")
    if not load.serving and config.slo != SloConfig():
        problems.append("slo: applies to load.mode serving (goodput); set load.mode: serving "
                        "or remove slo:")
    if load.lengths == "uniform" and config.dataset != "synthetic":
        problems.append(f"load.lengths uniform draws synthetic lengths, but dataset is "
                        f"{config.dataset!r}; its prompts have their own lengths: remove "
                        "load.lengths or use dataset: synthetic")
    return problems


def _quantisation_checks(config: ExperimentConfig) -> list[str]:
    problems: list[str] = []
    if config.pytorch is not None:
        if config.pytorch.load_in_8bit and config.pytorch.load_in_4bit:
            problems.append("pytorch.load_in_8bit and pytorch.load_in_4bit exclude each other")
        quantised = config.pytorch.load_in_8bit or config.pytorch.load_in_4bit
        if quantised and config.precision not in HALF_PRECISIONS:
            problems.append(
                f"bitsandbytes quantisation computes in fp16 or bf16, not '{config.precision}'"
            )
    for backend, rules in RULES.items():
        section = getattr(config, backend)
        scheme = getattr(section, "quantization", None) if section is not None else None
        if not scheme:
            continue
        if scheme not in rules.quantizations:
            problems.append(f"{backend}.quantization '{scheme}' is not supported; allowed: "
                            f"{', '.join(sorted(rules.quantizations))}")
        elif config.precision in QUANTISED_PRECISIONS:
            problems.append(
                f"precision '{config.precision}' already selects a quantisation; remove "
                f"{backend}.quantization '{scheme}' or use precision "
                f"{allowed(rules.quantized_precisions)}")
        elif config.precision not in rules.quantized_precisions:
            problems.append(
                f"{backend}.quantization '{scheme}' computes in "
                f"{allowed(rules.quantized_precisions)}, not '{config.precision}'")
    return problems


def find_credential(data: Any, path: str = "") -> str | None:
    """Return the dotted path of the first key or value that looks like a credential.

    The value itself is never returned, so error messages cannot echo a secret.
    """
    if isinstance(data, dict):
        for key, value in data.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _CREDENTIAL_KEY.search(key.lower()):
                return child
            found = find_credential(value, child)
            if found:
                return found
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found = find_credential(value, f"{path}[{index}]")
            if found:
                return found
    elif isinstance(data, str) and _CREDENTIAL_VALUE.match(data.strip()):
        return path or "<value>"
    return None
