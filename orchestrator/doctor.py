"""``llem doctor``: can this machine run studies? Each problem comes with its fix."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.errors import RunnerError
from orchestrator.runners.docker.api import Engine
from orchestrator.runners.docker.images import IMAGE_NAMES, image_ref
from orchestrator.runners.docker.plan import MachineSettings
from orchestrator.runners.docker.sessions import LABEL_SESSION, orphans

MIN_FREE_GB = 10.0


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def run_checks(output: Path) -> list[Check]:
    """Engine, NVIDIA runtime, GPUs, images, disk and caches."""
    checks = [_gpus()]
    try:
        engine = Engine()
        version = engine.ping()
    except RunnerError as error:
        checks.insert(0, Check("docker engine", False, error.message, error.fix or ""))
        return checks + [_disk(output), _hf_cache(), _engine_cache()]
    checks.insert(0, Check("docker engine", True, f"server {version}"))
    runtimes = engine.info().get("Runtimes") or {}
    checks.append(Check(
        "nvidia runtime", "nvidia" in runtimes,
        "registered" if "nvidia" in runtimes else "not registered (GPU containers impossible)",
        "install nvidia-container-toolkit and run: nvidia-ctk runtime configure --runtime=docker",
    ))
    for name in IMAGE_NAMES:
        ref = image_ref(name)
        present = engine.has_image(ref)
        checks.append(Check(f"image {ref}", present, "built" if present else "missing",
                            f"llem images build {name}"))
    stale = orphans(engine.containers(LABEL_SESSION))
    checks.append(Check("orphaned containers", not stale, f"{len(stale)} found",
                        "llem clean"))
    return checks + [_disk(output), _hf_cache(), _engine_cache()]


def _gpus() -> Check:
    from harness.energy import discover_gpus

    gpus = discover_gpus()
    names = [gpu.info().name for gpu in gpus]
    gpus.close()
    if names:
        return Check("gpus", True, ", ".join(names))
    return Check("gpus", False, "no NVIDIA GPU visible to NVML: energy will be null",
                 "install the NVIDIA driver, or accept CPU-only runs without energy figures")


def _disk(output: Path) -> Check:
    probe = output if output.exists() else Path.cwd()
    free_gb = shutil.disk_usage(probe).free / 2**30
    return Check("disk", free_gb >= MIN_FREE_GB, f"{free_gb:.0f} GiB free under {probe}",
                 f"free at least {MIN_FREE_GB:g} GiB (images and results are large)")


def _hf_cache() -> Check:
    cache = MachineSettings.detect().hf_cache
    if cache is None:
        return Check("hf cache", True, "none yet (only local model directories can be used)",
                     "")
    return Check("hf cache", True, f"{cache} (mounted read-only into containers)")


def _engine_cache() -> Check:
    from harness.engine_cache import EngineCache, default_cache_root

    cache = EngineCache(default_cache_root())
    entries = cache.entries()
    broken = [entry for entry in entries if entry.state in ("partial", "mismatch")]
    size_gb = sum(entry.size_bytes for entry in entries) / 1e9
    complete = len(entries) - len(broken)
    return Check("trt engine cache", not broken,
                 f"{cache.root}: {complete} engine(s), {size_gb:.1f} GB"
                 + (f", {len(broken)} broken" if broken else ""),
                 "llem cache prune (broken entries would be rebuilt anyway)")
