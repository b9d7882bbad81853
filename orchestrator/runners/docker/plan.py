"""What a run's container looks like: a pure function of the run and the machine's settings.

Security defaults, all fixed here and covered by a unit test: the host user's uid:gid, every
capability dropped, ``no-new-privileges``, never privileged, no Docker socket, ``init`` as
PID 1, a read-only root filesystem (the harness writes only to the run directory, the mounted
caches and a tmpfs at /tmp, which is also HOME for library caches), a limit on processes and
threads, and no network when the model is on local disk. Paths inside the container are the
host's own paths (the run directory, a local model, a ``.jsonl`` dataset are bind-mounted at the
same absolute path and the working directory is the host's), so ``experiment.json`` means the
same thing on both sides and the measurement config hash never depends on the runner.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import models
from harness.digests import cache_file
from harness.energy.rapl import ROOT_ENV
from harness.schema.catalog import BY_NAME
from harness.schema.run_spec import RunSpec
from orchestrator.runners.docker.labels import LABEL_RUN, LABEL_STUDY
from orchestrator.runners.docker.sessions import session_labels
from orchestrator.runners.session import Session

ENV_ALLOW = ("HF_TOKEN",)
"""Host variables passed into containers by name; the value is never written anywhere."""

HF_CACHE_TARGET = "/llem/hf-cache"
HOST_RAPL = Path("/sys/devices/virtual/powercap/intel-rapl")
"""The host's RAPL zones (device tree). Docker masks /sys/devices/virtual/powercap in every
container, and /sys/class/powercap only links into it, so the tree is bound elsewhere."""
RAPL_TARGET = "/llem/powercap"
DIGEST_CACHE_TARGET = "/llem/file-digests.json"
DEFAULT_SHM = "2g"
SCRATCH = "/tmp"  # noqa: S108 - inside the container, a private tmpfs
"""The one writable place outside the mounts: a tmpfs, also HOME (torch, triton, vLLM caches)."""
SCRATCH_OPTIONS = "rw,exec,nosuid,nodev,mode=1777"
"""``exec``: Docker's tmpfs default is noexec, but compiled kernels (triton) are loaded from the
cache under HOME. No size: it is memory, counted in the container's memory limit."""
PIDS_LIMIT = 8192
"""Processes plus threads in the container: stops a fork bomb, far above what a run needs
(tensor-parallel vLLM: a few processes with one thread per core each)."""


@dataclass(frozen=True)
class MountSpec:
    """A bind mount."""

    source: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class ContainerPlan:
    """Everything the engine is told about one run's container."""

    image: str
    command: list[str]
    user: str
    working_dir: str
    labels: dict[str, str]
    mounts: list[MountSpec]
    environment: dict[str, str]
    network_mode: str | None
    gpu_ids: list[int] | None
    shm_size: str = DEFAULT_SHM
    mem_limit: str | None = None
    security_opt: list[str] = field(default_factory=lambda: ["no-new-privileges"])
    cap_drop: list[str] = field(default_factory=lambda: ["ALL"])
    privileged: bool = False
    init: bool = True
    read_only: bool = True
    tmpfs: dict[str, str] = field(default_factory=lambda: {SCRATCH: SCRATCH_OPTIONS})
    pids_limit: int = PIDS_LIMIT

    def create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``docker.DockerClient.containers.create``."""
        from docker.types import DeviceRequest, Mount

        kwargs: dict[str, Any] = {
            "image": self.image,
            "command": self.command,
            "user": self.user,
            "working_dir": self.working_dir,
            "labels": self.labels,
            "mounts": [Mount(m.target, m.source, type="bind", read_only=m.read_only)
                       for m in self.mounts],
            "environment": self.environment,
            "shm_size": self.shm_size,
            "security_opt": self.security_opt,
            "cap_drop": self.cap_drop,
            "privileged": self.privileged,
            "init": self.init,
            "read_only": self.read_only,
            "tmpfs": self.tmpfs,
            "pids_limit": self.pids_limit,
            "detach": True,
        }
        if self.network_mode:
            kwargs["network_mode"] = self.network_mode
        if self.mem_limit:
            kwargs["mem_limit"] = self.mem_limit
            kwargs["memswap_limit"] = self.mem_limit  # no swap: an OOM is an OOM, not slowness
        if self.gpu_ids is not None:
            kwargs["device_requests"] = [DeviceRequest(
                driver="nvidia", device_ids=[str(i) for i in self.gpu_ids],
                capabilities=[["gpu"]])] if self.gpu_ids else [DeviceRequest(
                driver="nvidia", count=-1, capabilities=[["gpu"]])]
        return kwargs


@dataclass(frozen=True)
class MachineSettings:
    """What the plan needs to know about the host (gathered once, outside the pure function)."""

    uid: int
    gid: int
    cwd: Path
    hf_cache: Path | None
    host_env: dict[str, str]
    rapl: Path | None = None
    """The host's RAPL tree when it exists (bound read-only for the host's energy)."""

    @classmethod
    def detect(cls) -> MachineSettings:
        """Read uid/gid, working directory, HF cache location and the allow-listed variables."""
        hub = models.hub_cache()  # huggingface_hub's own: HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME
        return cls(
            uid=os.getuid(),
            gid=os.getgid(),
            cwd=Path.cwd(),
            hf_cache=hub if hub.is_dir() else None,
            host_env={k: os.environ[k] for k in ENV_ALLOW if k in os.environ},
            rapl=HOST_RAPL if HOST_RAPL.is_dir() else None,
        )


def plan_container(  # noqa: PLR0913 - each argument is one independent input
    run_dir: Path,
    spec: RunSpec,
    image: str,
    image_id: str,
    image_digest: str | None,
    session: Session,
    machine: MachineSettings,
    gpu_ids: list[int] | None,
    mem_limit: str | None = None,
    shm_size: str = DEFAULT_SHM,
) -> ContainerPlan:
    """The container for one run.

    Args:
        run_dir: absolute run directory on the host (mounted read-write at the same path).
        spec: the run's experiment.json.
        image: image reference.
        image_id: the image's id (recorded in the result's environment).
        image_digest: its repo digest, when it has one.
        session: the orchestrator session that owns the container.
        machine: host facts.
        gpu_ids: GPUs to request through the NVIDIA runtime; None for a CPU image.
        mem_limit: memory limit (e.g. "8g"), None for none.
        shm_size: /dev/shm size; vLLM and NCCL need more than Docker's 64 MB default.
    """
    run_dir = run_dir.resolve()
    mounts = [MountSpec(str(run_dir), str(run_dir), read_only=False)]
    model_path = (None if models.is_hub_id(spec.config.model)  # never a folder of the cwd
                  else _local_path(spec.config.model, machine.cwd))
    if model_path is not None:
        mounts.append(MountSpec(str(model_path), str(model_path), read_only=True))
    adapter = _local_path(spec.config.lora.adapter, machine.cwd) if spec.config.lora else None
    if adapter is not None:  # a local LoRA adapter directory, read as the model is
        mounts.append(MountSpec(str(adapter), str(adapter), read_only=True))
    digests = cache_file()
    if model_path is not None and digests.is_file():
        # The run checks the model directory's digest: with the host's file digests (keyed
        # by the same paths, inodes and times through the bind mount) that is a stat per file,
        # not a read of every weight file in each fresh container. Read-only: a cache only.
        mounts.append(MountSpec(str(digests.resolve()), DIGEST_CACHE_TARGET, read_only=True))
    if spec.config.dataset.endswith(".jsonl"):
        dataset = _local_path(spec.config.dataset, machine.cwd)
        if dataset is not None:
            mounts.append(MountSpec(str(dataset), str(dataset), read_only=True))
    if spec.baseline_cache_dir:
        cache = Path(spec.baseline_cache_dir)
        mounts.append(MountSpec(str(cache), str(cache), read_only=False))
    environment = {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "LLEM_IMAGE_ID": image_id,
                   "HOME": SCRATCH}
    if any(mount.target == DIGEST_CACHE_TARGET for mount in mounts):
        environment["LLEM_DIGEST_CACHE"] = DIGEST_CACHE_TARGET
    if image_digest:
        environment["LLEM_IMAGE_DIGEST"] = image_digest
    if machine.hf_cache is not None:
        mounts.append(MountSpec(str(machine.hf_cache), HF_CACHE_TARGET, read_only=True))
        environment["HF_HUB_CACHE"] = HF_CACHE_TARGET
    mounts += _setting_mounts(spec, machine.cwd)
    if machine.rapl is not None:  # energy.host: readable only where the host allows it
        mounts.append(MountSpec(str(machine.rapl), RAPL_TARGET, read_only=True))
        environment[ROOT_ENV] = RAPL_TARGET
    if spec.engine_cache_dir and BY_NAME[spec.config.backend].engine_cache:
        engines = Path(spec.engine_cache_dir)  # built engines are shared by every run: rw
        mounts.append(MountSpec(str(engines), str(engines), read_only=False))
    environment.update(machine.host_env)
    labels = {**session_labels(session), LABEL_STUDY: spec.study or "", LABEL_RUN: spec.run_id}
    return ContainerPlan(
        image=image,
        command=["run", str(run_dir / "experiment.json")],
        user=f"{machine.uid}:{machine.gid}",
        working_dir=str(machine.cwd),
        labels=labels,
        mounts=mounts,
        environment=environment,
        network_mode="none" if model_path is not None or _in_hf_cache(spec, machine) else None,
        gpu_ids=gpu_ids,
        shm_size=shm_size,
        mem_limit=mem_limit,
    )


def _setting_mounts(spec: RunSpec, cwd: Path) -> list[MountSpec]:
    """Read-only mounts of the host paths the backend section names (a prebuilt engine)."""
    section = spec.config.section()
    mounts = []
    for name in BY_NAME[spec.config.backend].path_settings:
        value = getattr(section, name, None)
        path = _local_path(value, cwd) if value else None
        if path is not None:
            mounts.append(MountSpec(str(path), str(path), read_only=True))
    return mounts


def _in_hf_cache(spec: RunSpec, machine: MachineSettings) -> bool:
    """True when the hub model is already in the host's HF cache (fetched before the study)."""
    if machine.hf_cache is None or models.looks_like_path(spec.config.model):
        return False
    return models.in_cache(spec.config.model, spec.config.load_revision, machine.hf_cache)


def _local_path(value: str, cwd: Path) -> Path | None:
    """The absolute path of ``value`` when it exists on this host, else None (a hub id)."""
    path = Path(value).expanduser()
    path = path if path.is_absolute() else cwd / path
    return path.resolve() if path.exists() else None
