"""``llem run --dry-run``: expand, validate and estimate; start nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.energy import discover_gpus
from orchestrator.estimate import ModelShape, estimate_run_s, estimate_vram, find_config, shape_of
from orchestrator.execute import PlannedRun, plan
from orchestrator.study import Study


@dataclass(frozen=True)
class PlannedEstimate:
    """One run of the plan with its estimates."""

    run: PlannedRun
    vram_gb: float | None
    fits: str


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


def estimate(study: Study) -> dict[str, Any]:
    """Runs with VRAM estimates, GPUs, totals and a duration estimate."""
    gpus = gpu_memory_gb()
    memory = [gb for _, gb in gpus]
    shapes: dict[str, ModelShape | None] = {}
    planned: list[PlannedEstimate] = []
    total_s = 0.0
    runs = plan(study)
    for run in runs:
        config = run.entry.config
        if config.model not in shapes:
            found = find_config(config.model)
            shapes[config.model] = shape_of(found) if found else None
        shape = shapes[config.model]
        vram = estimate_vram(config, shape).per_gpu_gb if shape else None
        planned.append(PlannedEstimate(run, vram, _fit(vram, memory)))
        total_s += estimate_run_s(config, shape, on_gpu=bool(gpus))
    gaps = study.execution.config_gap_s * max(len(runs) - 1, 0)
    gaps += study.execution.cycle_gap_s * max(study.execution.n_cycles - 1, 0)
    return {"runs": planned, "gpus": gpus, "estimated_duration_s": total_s + gaps}
