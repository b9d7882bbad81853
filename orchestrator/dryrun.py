"""``llem run --dry-run``: expand, validate and estimate; start nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.energy import discover_gpus
from harness.schema.catalog import BY_NAME
from harness.schema.config import ExperimentConfig
from orchestrator.estimate import ModelShape, estimate_run_s, estimate_vram, find_config, shape_of
from orchestrator.schedule import Gaps, PlannedRun, plan
from orchestrator.study import ExecutionConfig, Study


@dataclass(frozen=True)
class PlannedEstimate:
    """One run of the plan with its estimates."""

    run: PlannedRun
    vram_gb: float | None
    fits: str
    reservation: str


def gpu_memory_gb() -> list[tuple[str, float]]:
    """(name, memory GB) of every NVIDIA GPU NVML sees; empty without GPUs."""
    gpus = discover_gpus()
    found = [(gpu.info().name, gpu.info().memory_total_mb * 2**20 / 1e9) for gpu in gpus]
    gpus.close()
    return found


def _fit(vram_gb: float | None, memory_gb: list[float]) -> str:
    if vram_gb is None:
        return "unknown (model shape not found locally)"
    if not memory_gb:
        return "no GPU detected"
    return "fits" if vram_gb <= min(memory_gb) else "likely OOM"


def reservation(config: ExperimentConfig, memory_gb: list[float]) -> str:
    """What the backend actually takes on the GPU, beyond the estimate of what it needs."""
    entry = BY_NAME[config.backend]
    memory = entry.memory
    if memory.reservation == "as_needed" or memory.fraction_setting is None:
        return f"{entry.engine} allocates as it goes (estimate = need)"
    if not memory_gb and not entry.gpu_only:
        kv_cache = getattr(config.section(), "cpu_kvcache_space_gib", None)
        kv = (f"; KV cache {kv_cache} GiB (vllm.cpu_kvcache_space_gib)" if kv_cache
              else "; its KV cache in host memory, sized by the engine")
        return f"{entry.engine} runs on CPU here (no GPU detected){kv}"
    fraction = (getattr(config.section(), memory.fraction_setting, None)
                or memory.default_fraction or 1.0)
    if memory.reservation == "fraction_of_total":
        taken = f" = {fraction * min(memory_gb):.1f} GB" if memory_gb else ""
        return f"{entry.engine} reserves {memory.fraction_setting} {fraction:g} of each GPU{taken}"
    return (f"{entry.engine} gives the KV cache {fraction:g} of the memory free after the "
            "engine loads")


def grids(runs: list[PlannedRun]) -> dict[str, dict[str, int]]:
    """Per backend: its independent grid's configurations and runs."""
    found: dict[str, dict[str, int]] = {}
    seen: dict[str, set[str]] = {}
    for run in runs:
        backend = run.entry.config.backend
        grid = found.setdefault(backend, {"configurations": 0, "runs": 0})
        grid["runs"] += 1
        identity = run.entry.config.measurement_config_hash
        if identity not in seen.setdefault(backend, set()):
            seen[backend].add(identity)
            grid["configurations"] += 1
    return found


def gaps_s(runs: list[PlannedRun], execution: ExecutionConfig) -> float:
    """The fixed pauses between consecutive runs (s), by the executor's rule.

    The rule is :class:`orchestrator.schedule.Gaps`. Cool-down waits (``gap_until_cool``)
    depend on the GPUs and are not estimated.
    """
    return Gaps(runs, execution).total_s()


def estimate(study: Study, no_gaps: bool = False, runs: list[PlannedRun] | None = None,
             todo: Sequence[int] | None = None) -> dict[str, Any]:
    """Runs with VRAM estimates, GPUs, totals and a duration estimate.

    Args:
        study: the loaded study.
        no_gaps: the duration without the pauses between runs, as ``llem run --no-gaps`` runs.
        runs: the whole plan (default: the study's plan).
        todo: positions in ``runs`` still to run (what a resume has left); default: all. The
            pauses are the ones the executor waits between exactly these runs.
    """
    gpus = gpu_memory_gb()
    memory = [gb for _, gb in gpus]
    shapes: dict[tuple[str, str | None], ModelShape | None] = {}
    planned: list[PlannedEstimate] = []
    total_s = 0.0
    runs = plan(study) if runs is None else runs
    positions = list(range(len(runs))) if todo is None else list(todo)
    chosen = [runs[position] for position in positions]
    for run in chosen:
        config = run.entry.config
        key = (config.model, config.load_revision)
        if key not in shapes:
            found = find_config(config.model, config.load_revision)
            shapes[key] = shape_of(found) if found else None
        shape = shapes[key]
        vram = estimate_vram(config, shape).per_gpu_gb if shape else None
        planned.append(PlannedEstimate(run, vram, _fit(vram, memory),
                                       reservation(config, memory)))
        # a GPU-only backend never runs at CPU speed, GPUs seen here or not
        on_gpu = bool(gpus) or BY_NAME[config.backend].gpu_only
        total_s += estimate_run_s(config, shape, on_gpu=on_gpu)
    pauses_s = 0.0 if no_gaps else sum(Gaps(runs, study.execution).waits(positions))
    return {"runs": planned, "gpus": gpus, "grids": grids(chosen),
            "estimated_duration_s": total_s + pauses_s}
