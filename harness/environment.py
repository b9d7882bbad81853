"""Snapshot of the machine and software a run measured, read from APIs (never from pip)."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness._version import __version__
from harness.energy.device import GpuSet
from harness.energy.selection import Selection
from harness.schema.result import Environment, GpuIdentityProof, SchedulerJob

# Set by the Docker runner from the engine's API (image id and repo digest); absent elsewhere.
IMAGE_ID_ENV = "LLEM_IMAGE_ID"
IMAGE_DIGEST_ENV = "LLEM_IMAGE_DIGEST"


def snapshot(gpus: GpuSet, backend_versions: dict[str, str],
             selection: Selection | None = None,
             identity: GpuIdentityProof | None = None,
             determinism: dict[str, Any] | None = None) -> Environment:
    """Describe this machine, its GPUs and the backend libraries.

    Args:
        gpus: the GPUs the run measures (possibly empty).
        backend_versions: library versions reported by the backend itself; a ``cudnn``
            entry, when present, fills ``cudnn_version``.
        selection: how the measured GPUs were chosen (CUDA <-> NVML map).
        identity: the proof, after load, that the model computes on them.
        determinism: the backend's determinism settings (seeds, deterministic modes).
    """
    versions = dict(backend_versions)
    cudnn = versions.pop("cudnn", None)
    return Environment(
        gpus=[gpu.info() for gpu in gpus],
        gpu_bindings=list(selection.bindings) if selection is not None else [],
        gpu_identity=identity,
        gpus_available=selection.candidates if selection is not None else None,
        driver_version=gpus.driver_version,
        cuda_version=gpus.cuda_version,
        cudnn_version=cudnn,
        cpu=_cpu_model(),
        cpu_count=os.cpu_count(),
        ram_gb=_ram_gb(),
        os=platform.platform(),
        python=platform.python_version(),
        harness_version=__version__,
        backend_versions=versions,
        determinism=dict(determinism or {}),
        container_image_id=os.environ.get(IMAGE_ID_ENV) or None,
        container_image_digest=os.environ.get(IMAGE_DIGEST_ENV) or None,
        hostname_hash=hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12],
        scheduler=scheduler_job(os.environ),
    )


SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURMD_NODENAME", "SLURM_JOB_PARTITION", "SLURM_JOB_GPUS")
"""What Slurm sets in a job and the run records; the Slurm runner passes them into a container."""


def scheduler_job(environ: Mapping[str, str]) -> SchedulerJob | None:
    """The Slurm job this process runs in, from its variables; None outside a job."""
    job_id = environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    return SchedulerJob(scheduler="slurm", job_id=job_id,
                        node=environ.get("SLURMD_NODENAME") or None,
                        partition=environ.get("SLURM_JOB_PARTITION") or None,
                        gpus=environ.get("SLURM_JOB_GPUS") or None)


def _cpu_model() -> str | None:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _ram_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 2)
    except (ValueError, OSError, AttributeError):
        return None
