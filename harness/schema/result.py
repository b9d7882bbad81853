"""ExperimentResult: everything one run measured, schema version "1".

A field that this run could not measure is null, and ``warnings`` carries the reason; no field
is ever filled with an estimate that is not labelled as one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.schema.config import ExperimentConfig

SCHEMA_VERSION: Literal["1"] = "1"


class Record(BaseModel):
    """Base of result models: unknown keys are rejected so a reader notices a schema change."""

    model_config = ConfigDict(extra="forbid")


class Warning_(Record):
    """A condition the reader of this result should know about."""

    code: str = Field(description="Stable machine-readable code, e.g. no_energy_sensor.")
    message: str = Field(description="What happened and what it means for the figures.")


class Percentiles(Record):
    """Summary of a latency distribution (seconds)."""

    mean_s: float = Field(description="Mean (s).")
    p50_s: float = Field(description="Median (s).")
    p90_s: float = Field(description="90th percentile (s).")
    p99_s: float = Field(description="99th percentile (s).")
    count: int = Field(description="Values summarised (count).")


class PhaseEnergy(Record):
    """Energy of the prefill or decode phase of the whole workload."""

    energy_j: float | None = Field(description="Energy of the phase, summed over GPUs (J).")
    duration_s: float = Field(description="Time spent in the phase (s).")


class PrefillPassRecord(Record):
    """The measured prefill-only pass behind ``phase_split_method: prefill_pass``."""

    repeats: int = Field(description="Times the workload's prefill (one output token per "
                         "request) was run back to back.")
    duration_s: float = Field(description="Length of the whole pass (s).")
    energy_j: float = Field(description="Energy of the whole pass, summed over GPUs (J); "
                            "prefill energy is this divided by repeats.")


class SourceGpu(Record):
    """A measured GPU as an energy source that finds GPUs by itself (CodeCarbon) found it."""

    gpu_index: int = Field(description="The GPU llem measures (NVML index).")
    tracked_gpu_id: int = Field(
        description="The GPU id the source's tracker measures (for CodeCarbon, its gpu_ids "
        "entry: an NVML index).")
    gpus_found: str = Field(
        description="The GPUs the source found on the machine, as it names them (CodeCarbon's "
        "gpu_model, e.g. '8 x NVIDIA H100 80GB HBM3').")
    gpu_count_found: int = Field(description="How many GPUs the source found (count).")


class HostEnergyZone(Record):
    """One RAPL powercap zone's energy over the measurement window."""

    zone: str = Field(description="The powercap zone, e.g. intel-rapl:0 or intel-rapl:0:1.")
    name: str = Field(description="What the zone measures, as the kernel names it: package-N "
                      "(a CPU socket: cores and uncore), dram, core, uncore, psys.")
    energy_j: float | None = Field(
        description="Energy of the zone over the window (J); null when a read of it failed "
        "or its counter reset during the run.")


class HostEnergy(Record):
    """The host's own energy from RAPL: never part of energy_j or any per-token figure."""

    method: Literal["rapl_powercap"] | None = Field(
        None, description="rapl_powercap: RAPL counters read through the Linux powercap "
        "interface (Intel and AMD); null when not readable (see null_reason).")
    cpu_package_energy_j: float | None = Field(
        None, description="Energy of every CPU package (package-N zones) summed over the "
        "window (J): cores and uncore of each socket; per-die zones (package-N-die-M) reading "
        "one mirrored counter count once; null when a package zone was unreadable, none "
        "exists, a zone's name is unreadable, or per-die zones may mirror one counter.")
    dram_energy_j: float | None = Field(
        None, description="Energy of the DRAM zones summed over the window (J); null where the "
        "CPU exposes no DRAM zone (most AMD and client CPUs) or one was unreadable.")
    duration_s: float | None = Field(
        None, description="Time between the two RAPL reads at the window's edges (s).")
    zones: list[HostEnergyZone] = Field(
        default_factory=list, description="Every RAPL zone read, subzones included (core and "
        "uncore are parts of their package, not added to it).")
    null_reason: str | None = Field(
        None, description="Why host energy, or its package or DRAM total, is null: the path that "
        "is missing or not readable, or the zones found when no package or dram zone exists.")


class EnergyMetrics(Record):
    """Energy over the measurement window. Null where no sensor exists (see warnings)."""

    energy_j: float | None = Field(None, description="Raw window energy, summed over GPUs (J).")
    energy_per_gpu_j: list[float] | None = Field(
        None, description="Raw window energy per measured GPU (J).")
    baseline_power_w: float | None = Field(None, description="Idle power, summed over GPUs (W).")
    energy_dynamic_j: float | None = Field(
        None, description="energy_j - baseline_power_w x duration_s (J); never replaces "
        "energy_j."
    )
    energy_integrated_j: float | None = Field(
        None, description="Trapezoidal integral of sampled power over the window, summed over "
        "GPUs (J): a cross-check of energy_j."
    )
    energy_integrated_per_gpu_j: list[float] | None = Field(
        None, description="The same integral per measured GPU (J).")
    power_samples_per_gpu: list[int] | None = Field(
        None, description="Successful power reads of each measured GPU inside the window "
        "(count; a sampler tick whose read of a GPU failed does not count for that GPU).")
    sampler_read_errors_per_gpu: list[int] | None = Field(
        None, description="Failed sampler reads of each measured GPU inside the window "
        "(count).")
    energy_method: str | None = Field(
        None, description="<source>_counter or <source>_power_integration (source: nvml, "
        "zeus or codecarbon); null without a sensor."
    )
    energy_per_output_token_j: float | None = Field(
        None, description="energy_j / throughput.output_tokens (J per token).")
    energy_dynamic_per_output_token_j: float | None = Field(
        None, description="energy_dynamic_j / output tokens (J per token); null when "
        "energy_dynamic_j is null. An attribution aid beside energy_per_output_token_j."
    )
    energy_per_request_j: float | None = Field(
        None, description="energy_j / throughput.requests (J per request).")
    tokens_per_joule: float | None = Field(
        None, description="throughput.output_tokens / energy_j (tokens/J).")
    mean_power_w: float | None = Field(
        None, description="energy_j / throughput.duration_s: mean power of the measured GPUs "
        "together (W).")
    uncertainty_pct: float | None = Field(
        None, description="The sensor's nominal accuracy (NVML: +-5 W per GPU) as a percentage "
        "of mean power (%): a specification, not a bound on the error of energy_j and not a "
        "confidence interval."
    )
    prefill: PhaseEnergy | None = Field(
        None, description="Prefill energy and time of the workload; null with "
        "phase_split_null_reason when not measurable.")
    decode: PhaseEnergy | None = Field(
        None, description="Decode energy and time of the workload (see prefill).")
    phase_split_method: Literal["window_edges", "prefill_pass", "exact", "approximate"] | None = (
        Field(None, description="window_edges: the window's counter cut at each static "
              "batch's phase edges, every phase at least 5 s long; prefill_pass: a measured "
              "prefill-only pass, decode by difference (docs/methodology.md). exact and "
              "approximate were written by earlier versions (no longer produced)."))
    phase_split_null_reason: str | None = Field(
        None, description="Why prefill and decode are null, when they are.")
    prefill_pass: PrefillPassRecord | None = Field(
        None, description="The prefill-only pass, when that method was used.")
    shortest_phase_s: float | None = Field(
        None, description="Shortest prefill or decode interval of any static batch in the "
        "window (s): what the window_edges method is judged on (it needs every interval >= "
        "5 s); null when the backend records no separate phase edges (continuous batching).")
    cold_start_energy_j: float | None = Field(
        None, description="Energy of model load, summed over GPUs (J).")
    cold_start_duration_s: float | None = Field(None, description="Model load time (s).")
    source_gpus: list[SourceGpu] | None = Field(
        None, description="With energy.backend codecarbon: what CodeCarbon found for each "
        "measured GPU, in GPU order, checked before the run (a tracker that found none fails "
        "preflight); null for the other sources, which read the GPUs llem opened.")
    host: HostEnergy | None = Field(
        None, description="CPU package and DRAM energy of the window from RAPL, beside the GPU "
        "figures and never added to them; null only in results written before llem recorded "
        "it.")


class ThroughputMetrics(Record):
    """Work done in the measurement window."""

    input_tokens: int = Field(
        description="Prompt tokens of the requests (count; padding excluded). Serving mode: "
        "of the requests sent inside the window.")
    output_tokens: int = Field(
        description="Tokens delivered (count): what the requests asked for (EOS ignored). "
        "Every per-token figure (energy_per_output_token_j, output_tokens_per_s) divides by "
        "this. Serving mode: the tokens that arrived inside the window, whichever request "
        "they belong to.")
    generated_positions: int | None = Field(
        None, description="Decode positions the backend computed (count): equal to "
        "output_tokens for engines that stop each request at its length; a static batch "
        "computes its longest request's length for every row, so shorter requests add "
        "positions nobody asked for.")
    prompt_padding_tokens: int | None = Field(
        None, description="Prompt positions computed as padding (count; static batches pad to "
        "their longest prompt); 0 for engines that do not pad.")
    requests: int = Field(description="Requests in the window (count). Serving mode: "
                          "requests that completed inside it.")
    duration_s: float = Field(description="Measurement window length (s).")
    output_tokens_per_s: float = Field(
        description="output_tokens / duration_s (tokens/s); 0 for an empty window.")
    requests_per_s: float = Field(
        description="requests / duration_s (requests/s); 0 for an empty window.")
    cached_prompt_tokens: int | None = Field(
        None,
        description=(
            "Prompt tokens (count) in the window whose KV the engine took from a cross-request "
            "cache instead of computing them: the sum of vLLM's RequestOutput.num_cached_tokens; "
            "0 for PyTorch, which has no such cache; null where the backend does not report it "
            "(TensorRT-LLM)."
        ),
    )


class LatencyMetrics(Record):
    """Per-request latency (s); TTFT, TPOT and ITL only with latency.streaming."""

    reference_point: Literal["batch_start", "submission", "arrival"] | None = Field(
        None, description="Where e2e and TTFT count from: the request's static batch start "
        "(PyTorch: queueing behind earlier batches excluded), its submission to the engine "
        "(vLLM, TensorRT-LLM offline: every request submitted at the workload's start), or its "
        "arrival (serving mode: any wait for a concurrency slot or in the engine's queue "
        "included).")
    e2e: Percentiles | None = Field(
        None, description="End-to-end latency per request, from the reference point to the "
        "request being finished for its caller; null when the backend returns every request "
        "at once (offline vLLM / TensorRT-LLM) and no per-request end is observed.")
    ttft: Percentiles | None = Field(
        None, description="Time to first token per request, from the reference point.")
    tpot: Percentiles | None = Field(
        None, description="Time per output token per request: (last token - first token) / "
        "(tokens - 1) of the request itself, i.e. (e2e - TTFT) / (tokens - 1) for a streamed "
        "request, as vLLM's serving benchmark and MLPerf define it; a static batch's short row "
        "is not charged its wait for the batch (that is in e2e); one-token requests excluded.")
    itl: Percentiles | None = Field(
        None, description="Inter-token latency: the gap between consecutive streamed chunks of "
        "one request (a chunk may carry several tokens), the first chunk excluded.")


class MemoryMetrics(Record):
    """Memory taken by the model and at the peak of inference."""

    device: str = Field(description="'cuda' or 'cpu'.")
    model_memory_mb: float | None = Field(
        None, description="Memory the loaded model takes (MiB: 2^20 bytes).")
    peak_inference_memory_mb: float | None = Field(
        None, description="Peak memory during inference (MiB: 2^20 bytes); what it covers "
        "depends on method.")
    method: str = Field(description="How the figures were obtained: the backend's own "
                        "counters (PyTorch) or NVML's whole-GPU memory in use (vLLM, "
                        "TensorRT-LLM; includes their KV-cache reservation).")


class ThermalMetrics(Record):
    """Temperatures and throttling seen in the window (per GPU)."""

    temperature_start_c: list[float | None] | None = Field(
        None, description="Per GPU: first temperature read in the window (degC).")
    temperature_end_c: list[float | None] | None = Field(
        None, description="Per GPU: last temperature read in the window (degC).")
    throttle_reasons_seen: list[str] = Field(
        default_factory=list, description="Clock slowdown reasons seen on any measured GPU in "
        "the window (sw_power_cap included: the GPU holding its power limit).")
    throttle_reasons_per_gpu: list[list[str]] | None = Field(
        None, description="The same per measured GPU.")
    sm_clock_mhz_mean: list[float | None] | None = Field(
        None, description="Mean current SM clock per GPU in the window (MHz).")
    mem_clock_mhz_mean: list[float | None] | None = Field(
        None, description="Mean current memory clock per GPU in the window (MHz).")
    user_clocks_limited: list[bool] | None = Field(
        None, description="Per GPU: NVML reported applications_clocks_setting (alias "
        "user-defined clocks: application or locked clocks holding the GPU) at some point in "
        "the window.")
    gpu_util_pct_max: list[float | None] | None = Field(
        None, description="Highest NVML utilisation per GPU in the window (%: of the time a "
        "kernel ran); null where not reported.")


class FlopsEstimate(Record):
    """Reference metadata, never a headline figure."""

    flops: float = Field(description="prefill_flops + decode_flops (FLOP).")
    prefill_flops: float = Field(description="2 x non-embedding parameters x input tokens "
                                 "(FLOP).")
    decode_flops: float = Field(description="2 x non-embedding parameters x output tokens "
                                "(FLOP).")
    method: str = Field(description="How the estimate was made and what it leaves out.")
    confidence: Literal["low", "medium", "high"] = Field(
        description="How close to the FLOPs actually executed the estimate is expected to be.")


class WarmupRecord(Record):
    """What the warmup did before the window opened."""

    batches: int = Field(
        description="Batches run (count): static batches (PyTorch) or engine waves, first pass "
        "included.")
    duration_s: float = Field(description="Length of the warmup (s).")
    temperature_start_c: list[float | None] | None = Field(
        None, description="Per GPU: temperature when the warmup began (degC).")
    temperature_end_c: list[float | None] | None = Field(
        None, description="Per GPU: temperature when the warmup ended (degC).")
    stable: bool | None = Field(
        None, description="With warmup.until_stable: whether the steady-state rule was met "
        "(docs/methodology.md). Null when not asked or without a GPU.")
    temperature_slope_c_per_min: list[float | None] | None = Field(
        None, description="Per GPU: least-squares temperature slope over the last "
        "stability_window_s of warmup (degC/min); null entry with too few readings.")
    power_slope_pct_per_min: list[float | None] | None = Field(
        None, description="Per GPU: least-squares slope of the mean power of each whole "
        "repeated warmup batch over the last stability_window_s, as % of their mean per "
        "minute (%/min); null entry with fewer than 4 such batches or no power reading.")
    stability_window_s: float | None = Field(
        None, description="Length of the window the slopes were fitted over (s): 120, or the "
        "whole warmup when shorter. Null without a GPU.")


class CoolDownRecord(Record):
    """The orchestrator's wait for the GPUs to cool before this run (gap_until_cool)."""

    outcome: Literal["reached", "cut_off", "not_requested", "first_run", "no_sensor",
                     "interrupted"] = Field(
        description="reached: every GPU came within margin_c of its idle reference; cut_off: "
        "max_s passed first; not_requested: gap_until_cool off (or gaps skipped); first_run: "
        "the idle reference was read just before this run, no wait; no_sensor: no GPU "
        "temperature to wait on; interrupted: a stop request ended the wait.")
    waited_s: float | None = Field(
        None, description="Seconds waited after the fixed gap (s); null when there was no wait.")
    margin_c: float | None = Field(None, description="execution.cool_margin_c (degC).")
    max_s: float | None = Field(None, description="execution.cool_max_s (s).")
    gpu_indices: list[int] | None = Field(
        None, description="Host NVML indices the temperatures below belong to.")
    idle_c: list[float | None] | None = Field(
        None, description="Per GPU: idle reference, read before the study's first run (degC).")
    temperature_c: list[float | None] | None = Field(
        None, description="Per GPU: temperature when the wait ended (degC).")


class BaselineRecord(Record):
    """Idle power measured before the model loaded."""

    power_w: list[float] = Field(description="Idle power per GPU (W).")
    duration_s: float = Field(description="How long idle power was measured (s); for a cached "
                              "baseline, the shortest of the cached measurements.")
    provenance: Literal["fresh", "cached"] = Field(
        description="fresh: measured by this run; cached: taken from the study's baseline "
        "cache (same GPU, driver and 5 degC temperature band).")
    age_s: float = Field(description="Age of the baseline when used (s): 0 when fresh, the "
                         "oldest cached entry's age otherwise.")
    temperature_c: list[float | None] | None = Field(
        None, description="Per GPU: temperature when the baseline was taken (degC); its 5 degC "
        "band is part of the cache key.")
    idle_verified: bool | None = Field(
        None, description="Fresh baselines: no other compute process and 0 % utilisation on "
        "every GPU while idle power was measured. False: the figure is not idle power, it was "
        "not cached, and the baseline_not_idle warning says which GPUs were busy.")
    busy_gpus: list[int] = Field(
        default_factory=list, description="GPUs (by index) found busy during a fresh baseline.")
    cool_down: CoolDownRecord | None = Field(
        None, description="How the cool-down before this run ended; null for a run not "
        "started by a study.")


class GpuInfo(Record):
    """One GPU as the driver reports it."""

    index: int = Field(description="NVML index where the harness ran.")
    name: str = Field(description="Product name, as NVML reports it.")
    uuid: str = Field(description="The GPU's UUID.")
    memory_total_mb: float = Field(description="Total memory (MiB: 2^20 bytes).")
    pci_bus_id: str | None = Field(None, description="PCI bus id (domain:bus:device.function).")
    compute_capability: str | None = Field(None, description="CUDA compute capability, e.g. 9.0.")
    power_limit_w: float | None = Field(None, description="Power limit in force (W).")
    default_power_limit_w: float | None = Field(
        None, description="The GPU's default power limit (W).")
    persistence_mode: bool | None = Field(None, description="Driver persistence mode on.")
    ecc_enabled: bool | None = Field(None, description="ECC memory on.")
    mig_enabled: bool | None = Field(
        None, description="MIG mode on (NVML then reports the whole GPU, not a slice).")
    applications_graphics_clock_mhz: float | None = Field(
        None, description="Applications clock target for graphics (MHz); null where unsupported.")
    applications_memory_clock_mhz: float | None = Field(
        None, description="Applications clock target for memory (MHz); null where unsupported.")
    auto_boost_enabled: bool | None = Field(
        None, description="Auto boosted clocks on; null where unsupported (most recent GPUs).")
    sm_clock_max_mhz: float | None = Field(
        None, description="Highest SM clock the GPU supports (MHz).")
    mem_clock_max_mhz: float | None = Field(
        None, description="Highest memory clock the GPU supports (MHz).")
    grace_hopper: bool | None = Field(
        None, description="A Grace Hopper module (C2C link to a Grace CPU): its power and "
        "energy readings cover the module, CPU and memory included; null where NVML cannot "
        "tell.")


class GpuBinding(Record):
    """One measured GPU as CUDA and NVML number it (the two orders differ)."""

    cuda_index: int = Field(description="Index of the GPU among the run's CUDA devices.")
    nvml_index: int = Field(description="Index of the GPU in NVML (PCI bus order) where the "
                            "harness ran (inside a container: the container's own numbering).")
    uuid: str = Field(description="The GPU's UUID: the same on the host and in a container.")
    pci_index: int = Field(
        description="Index in PCI bus order among the GPUs the harness saw: what an integer "
        "CUDA_VISIBLE_DEVICES entry names under CUDA_DEVICE_ORDER=PCI_BUS_ID.")
    pci_bus_id: str | None = Field(None, description="The GPU's PCI bus id.")


class GpuIdentityProof(Record):
    """How the run showed, after the model loaded, that it measures the GPUs it computes on."""

    method: Literal["cuda_device_uuid", "nvml_processes_or_memory", "none"] = Field(
        description="cuda_device_uuid: the UUIDs of the devices holding the model's tensors "
        "equal the measured GPUs'; nvml_processes_or_memory: every measured GPU gained a "
        "compute process or >= 256 MiB of memory across the load (engines whose workers are "
        "other processes); none: nothing to prove (see evidence).")
    evidence: list[str] = Field(default_factory=list, description="What was seen, per GPU.")


class SchedulerJob(Record):
    """The batch job a run ran in (the Slurm runner), from the variables the scheduler sets."""

    scheduler: Literal["slurm"] = Field(description="The workload manager.")
    job_id: str = Field(description="Its job id (SLURM_JOB_ID).")
    node: str | None = Field(None, description="The node it ran on (SLURMD_NODENAME).")
    partition: str | None = Field(None, description="Its partition (SLURM_JOB_PARTITION).")
    gpus: str | None = Field(
        None, description="The GPUs the job was allocated, as Slurm numbers them on the node "
        "(SLURM_JOB_GPUS); null: none allocated through gres. The measured GPUs (gpus, "
        "gpu_bindings) are these, by UUID.")


class Environment(Record):
    """The machine and software the run measured, read from APIs (never from pip)."""

    gpus: list[GpuInfo] = Field(default_factory=list, description="The measured GPUs.")
    gpu_bindings: list[GpuBinding] = Field(
        default_factory=list, description="CUDA index -> NVML index -> UUID of each measured GPU.")
    gpu_identity: GpuIdentityProof | None = Field(
        None, description="Proof, after load, that the measured GPUs are the model's.")
    gpus_available: int | None = Field(
        None, description="GPUs the run could have used (the measured ones are the first of "
        "them, as many as the backend computes on); null without NVML.")
    driver_version: str | None = Field(None, description="NVIDIA driver version.")
    cuda_version: str | None = Field(None, description="CUDA version the driver supports.")
    cudnn_version: str | None = Field(None, description="cuDNN version, where loaded.")
    cpu: str | None = Field(None, description="CPU model name.")
    cpu_count: int | None = Field(None, description="Logical CPUs (count).")
    ram_gb: float | None = Field(None, description="Physical memory (GiB: 2^30 bytes).")
    os: str = Field(description="Operating system and kernel.")
    python: str = Field(description="Python version.")
    harness_version: str = Field(description="llem version of the harness that ran.")
    backend_versions: dict[str, str] = Field(
        default_factory=dict, description="Versions of the backend's libraries, by name.")
    determinism: dict[str, Any] = Field(
        default_factory=dict, description="Determinism settings in force, read from the "
        "libraries: PyTorch's cudnn.deterministic / cudnn.benchmark / deterministic "
        "algorithms and CUBLAS_WORKSPACE_CONFIG, the engines' seeds.")
    container_image_id: str | None = Field(
        None, description="Image id of the run's container (Docker runner), from the API.")
    container_image_digest: str | None = Field(
        None, description="Repository digest of that image, where it has one.")
    hostname_hash: str | None = Field(None, description="SHA-256 prefix, not the name itself.")
    scheduler: SchedulerJob | None = Field(
        None, description="The batch job it ran in (Slurm runner); null elsewhere.")


class EngineCacheRecord(Record):
    """How a TensorRT-LLM run got its engine (see docs/backends.md)."""

    source: Literal["cache", "engine_dir"] = Field(
        description="'cache': the llem engine cache; 'engine_dir': a prebuilt engine given.")
    hit: bool | None = Field(None, description="True: found built; False: built by this run.")
    key: str | None = Field(None, description="SHA-256 of the build description.")
    engine_dir: str = Field(description="The engine that was loaded.")
    build_s: float | None = Field(
        None, description="Build time in this run (s; part of the cold start), null on a "
        "hit.")
    description: dict[str, Any] | None = Field(None, description="What the key hashes.")


class SanityRecord(Record):
    """Post-run checks; a failure flags the result, it does not drop it."""

    passed: bool = Field(description="Every check that applies passed.")
    failed_checks: list[str] = Field(
        default_factory=list, description="One line per failed check, saying what failed.")


class ServingMetrics(Record):
    """Serving mode: how the load was offered and what the steady-state window saw.

    The window holds every instant t with open <= t < close (after the ramp-up, before the
    drain). Every latency figure covers the requests that arrived inside it and completed; the
    rates count events inside it; requests_total and requests_failed cover the whole run.
    docs/serving.md gives each method.
    """

    client: Literal["in_process", "openai_server"] = Field(
        description="How requests reached the engine: its async API in the harness process, or "
        "its OpenAI-compatible server on loopback.")
    arrival: Literal["poisson", "gamma", "constant"] = Field(description="Arrival process.")
    burstiness: float | None = Field(None, description="Gamma shape of the gaps (gamma only).")
    request_rate_rps: float = Field(description="Requested mean arrival rate (requests/s).")
    max_concurrency: int | None = Field(
        None, description="Requests in flight at most (null: no limit).")
    seed: int = Field(description="Seed of the arrival times and drawn lengths.")
    ramp_up_s: float = Field(description="Arrivals left out before the window opened (s).")
    window_s: float = Field(description="Steady-state window length (s): from the end of the "
                            "ramp-up to the last arrival (a request count) or to the end of "
                            "load.duration_s; the last arrival, on the closing edge, belongs to "
                            "the drain.")
    drain_s: float = Field(description="From the window's close to the last request's end (s).")
    requests_total: int = Field(description="Requests sent in the whole run (count).")
    requests_in_window: int = Field(description="Requests that arrived inside the window "
                                    "(count); those of them that completed are the latency "
                                    "figures' population.")
    requests_completed_in_window: int = Field(
        description="Requests whose stream ended without error inside the window, whenever "
        "they arrived (count).")
    requests_failed: int = Field(description="Requests of the whole run that ended with an "
                                 "error (count).")
    offered_rate_rps: float = Field(
        description="Arrivals inside the window / window length (requests/s): the schedule as "
        "realised, a check on the generator.")
    sent_rate_rps: float = Field(
        description="Requests handed to the engine inside the window / window length "
        "(requests/s); below the offered rate when max_concurrency holds arrivals back.")
    achieved_rate_rps: float = Field(
        description="Requests completed inside the window / window length (requests/s): "
        "the rate the engine sustained.")
    output_tokens_in_window: int = Field(
        description="Tokens that arrived inside the window, whichever request they belong "
        "to (count).")
    output_tokens_per_s: float = Field(
        description="output_tokens_in_window / window_s (tokens/s).")
    arrival_lag: Percentiles | None = Field(
        None, description="How late the driver sent each request after it was due: sent - "
        "arrival less the request's wait for a concurrency slot (the generator's own error; "
        "s). Without max_concurrency, sent - arrival; with it, null where the driver did not "
        "time the wait for a slot.")
    queueing_delay: Percentiles | None = Field(
        None, description="Per request: time from arrival until the engine first scheduled it: "
        "sent - arrival (the wait for a concurrency slot and the driver's lateness) plus the "
        "engine's reported queue time; sent - arrival only when the engine did not report a "
        "queue time for every request (see queueing_delay_method).")
    queueing_delay_method: Literal["client_wait", "client_wait+engine_queue"] | None = Field(
        None, description="What queueing_delay includes on this run: client_wait (sent - "
        "arrival), client_wait+engine_queue (plus the engine's own queue time).")
    ttft: Percentiles | None = Field(None, description="Time to first token: first chunk - "
                                     "arrival.")
    tpot: Percentiles | None = Field(None, description="Time per output token: (last chunk - "
                                     "first chunk) / (tokens - 1); one-token requests "
                                     "excluded.")
    itl: Percentiles | None = Field(None, description="Gaps between consecutive chunks of one "
                                    "request.")
    e2e: Percentiles | None = Field(None, description="End of the stream - arrival.")
    slo_ttft_ms: float | None = Field(None, description="slo.ttft_ms of the run.")
    slo_tpot_ms: float | None = Field(None, description="slo.tpot_ms of the run.")
    slo_attainment: float | None = Field(
        None, description="Share of requests_in_window that completed and met every SLO set "
        "(0-1; a one-token request meets any TPOT target); null without SLOs or without "
        "requests in the window.")
    goodput_rps: float | None = Field(
        None, description="Requests that arrived in the window and met every SLO / window "
        "length (requests/s); null without SLOs.")
    idle_power_share: float | None = Field(
        None, description="Idle (baseline) power / mean power in the window: the share of the "
        "energy per token that is the machine standing by, a lower bound (idle power is taken "
        "with no model loaded); above 1 only when the window drew less than idle power; null "
        "without a baseline or a sensor.")
    saturated: bool = Field(
        description="The engine did not keep up: achieved_rate_rps below 0.9 x "
        "offered_rate_rps, or, with max_concurrency, the median request of the window waited "
        "for a slot more than 10 % of its e2e (docs/serving.md).")
    saturation_reason: str | None = Field(
        None, description="Which rule made the run saturated, with its numbers; null when "
        "not saturated.")


class ExperimentResult(Record):
    """Everything one run measured."""

    schema_version: Literal["1"] = Field(SCHEMA_VERSION, description="Result schema version.")
    run_id: str = Field(description="The run's id: the name of its run directory.")
    config: ExperimentConfig = Field(
        description="The experiment as given (docs/configuration.md).")
    measurement_config_hash: str = Field(
        description="16 hex digits identifying the measurement configuration: runs with the "
        "same hash are cycles of one configuration.")
    effective_parameters: dict[str, Any] = Field(
        description="Backend parameters as the backend actually ran them, defaults resolved."
    )
    cycle: int = Field(1, description="Which repetition of the configuration this run is.")
    runner: str = Field("inprocess", description="What started the harness (local, docker, "
                        "harness for a single experiment file, inprocess).")
    started_at: str = Field(description="When the run started (ISO 8601, UTC).")
    finished_at: str = Field(description="When the run finished (ISO 8601, UTC).")
    energy: EnergyMetrics = Field(description="Energy of the measurement window.")
    throughput: ThroughputMetrics = Field(description="Work done in the window.")
    latency: LatencyMetrics = Field(description="Per-request latency.")
    serving: ServingMetrics | None = Field(
        None, description="Serving mode only: the offered load and the steady-state figures.")
    memory: MemoryMetrics | None = Field(None, description="Memory figures.")
    thermal: ThermalMetrics | None = Field(
        None, description="Temperatures, clocks and throttling in the window; null without a "
        "GPU.")
    flops_estimate: FlopsEstimate | None = Field(
        None, description="Estimated FLOPs: reference metadata, never a headline.")
    warmup: WarmupRecord = Field(description="What the warmup did.")
    baseline: BaselineRecord | None = Field(
        None, description="Idle power; null without a GPU or with the baseline turned off.")
    engine_cache: EngineCacheRecord | None = Field(
        None, description="TensorRT-LLM only: engine cache hit or miss and build time.")
    environment: Environment = Field(description="Machine and software.")
    sanity: SanityRecord | None = Field(None, description="Post-run sanity checks.")
    warnings: list[Warning_] = Field(
        default_factory=list, description="Conditions the reader should know about "
        "(docs/methodology.md lists every code).")

    def warning_codes(self) -> list[str]:
        """Codes of all warnings, in order."""
        return [warning.code for warning in self.warnings]


class ErrorRecord(Record):
    """``error.json``: why a run failed, and in which phase."""

    schema_version: Literal["1"] = Field(SCHEMA_VERSION, description="Schema version.")
    type: str = Field(description="The exception's class name.")
    message: str = Field(description="The exception's message.")
    traceback: str = Field(description="The full Python traceback.")
    phase: str = Field(description="The protocol phase that failed (preflight, baseline, "
                       "load, warmup, measure, write, ...).")
