"""Docker runner: one short-lived container per run, removed whatever happens.

The orchestrator enforces the wall-clock timeout itself (the SDK's wait timeout is only an HTTP
timeout), follows ``events.jsonl`` through the bind mount for progress and liveness, saves the
logs to ``container.log``, inspects the container before removing it, and classifies the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.backends.catalog import BY_NAME, CATALOG
from harness.errors import RunnerError
from harness.io import write_bytes
from harness.schema.reading import read_model
from harness.schema.run_spec import RunSpec
from orchestrator.runners.base import (
    LOG_NAME,
    EndKind,
    EventCallback,
    EventFollower,
    Runner,
    RunOutcome,
    log_tail,
)
from orchestrator.runners.docker.api import Engine, ImageInfo
from orchestrator.runners.docker.images import IMAGE_NAMES, image_ref
from orchestrator.runners.docker.plan import MachineSettings, plan_container
from orchestrator.runners.docker.sessions import LABEL_SESSION, Session, orphans

POLL_S = 0.1
GRACE_S = 10.0
EXIT_SIGKILL, EXIT_SIGTERM, EXIT_INTERRUPTED = 137, 143, 130

DEFAULT_IMAGES = {entry.name: image_ref(entry.image) for entry in CATALOG}
"""Backend -> the image that serves it on a GPU machine (from the backend catalog)."""
CPU_IMAGES = {entry.name: image_ref(entry.cpu_image) for entry in CATALOG if entry.cpu_image}
"""Backend -> the image that serves it on a machine without GPUs (backends that run on CPU)."""
CPU_IMAGE = image_ref("cpu")
IMAGE_OF_REF = {image_ref(name): name for name in IMAGE_NAMES}


class DockerRunner(Runner):
    """Runs each experiment in its own container.

    Args:
        engine: a connected :class:`Engine` (connects lazily when None).
        images: backend -> image reference overrides.
        image: one image for every backend (``--image``).
        mem_limit: container memory limit, e.g. "16g".
        shm_size: /dev/shm size.
        grace_s: time between SIGTERM and SIGKILL when a run is stopped.
    """

    name = "docker"

    def __init__(
        self,
        engine: Engine | None = None,
        images: dict[str, str] | None = None,
        image: str | None = None,
        mem_limit: str | None = None,
        shm_size: str = "2g",
        grace_s: float = GRACE_S,
    ) -> None:
        super().__init__()
        self._engine = engine
        self.images = {**DEFAULT_IMAGES, **(images or {})}
        self.image_override = image
        self.mem_limit = mem_limit
        self.shm_size = shm_size
        self.grace_s = grace_s
        self.session = Session.current()

    @property
    def engine(self) -> Engine:
        """The engine connection, opened on first use."""
        if self._engine is None:
            self._engine = Engine()
        return self._engine

    def harness_gpus(self, requested: list[int] | None) -> list[int] | None:
        """Inside the container the requested GPUs are the only ones, renumbered from 0."""
        return None

    def image_for(self, backend: str) -> str:
        """The image that serves ``backend`` on this machine."""
        if self.image_override:
            return self.image_override
        if backend in CPU_IMAGES and backend not in self._explicit() and not self._has_gpus():
            return CPU_IMAGES[backend]
        return self.images[backend]

    def _explicit(self) -> set[str]:
        return {b for b, ref in self.images.items() if ref != DEFAULT_IMAGES.get(b)}

    def _has_gpus(self) -> bool:
        runtimes = self.engine.info().get("Runtimes") or {}
        return "nvidia" in runtimes

    def preflight(self, backends: set[str] | None = None,
                  gpus: list[int] | None = None) -> list[str]:
        """Engine reachable and every needed image built (each problem with its fix)."""
        try:
            self.engine.ping()
        except RunnerError as error:
            return [str(error)]
        problems = []
        gpu_backends = sorted(b for b in backends or set() if BY_NAME[b].gpu_only)
        if gpu_backends and not self._has_gpus():
            problems.append(
                f"backend {', '.join(gpu_backends)} needs NVIDIA GPUs, but the Docker engine has "
                "no nvidia runtime\n  fix: install the NVIDIA driver and nvidia-container-toolkit "
                "(nvidia-ctk runtime configure --runtime=docker), or run pytorch on cpu")
        for backend in sorted(backends or set()):
            ref = self.image_for(backend)
            if not self.engine.has_image(ref):
                flavour = IMAGE_OF_REF.get(ref, backend)
                problems.append(f"image {ref} for backend {backend} is not built\n"
                                f"  fix: llem images build {flavour}")
        return problems

    def startup(self) -> None:
        """Remove containers left by orchestrators that are no longer alive."""
        clean_orphans(self.engine, self.session)

    def run(self, run_dir: Path, timeout_s: float | None, on_event: EventCallback,
            gpus: list[int] | None = None) -> RunOutcome:
        """Run ``run_dir/experiment.json`` in a fresh container and classify its end."""
        spec = read_model(run_dir / "experiment.json", RunSpec)
        ref = self.image_for(spec.config.backend)
        image = self.engine.image(ref)
        plan = plan_container(
            run_dir, spec, ref, image.id, image.digest, self.session,
            MachineSettings.detect(), gpu_ids=None if _is_cpu(image) else (gpus or []),
            mem_limit=self.mem_limit, shm_size=self.shm_size,
        )
        with self._container(plan.create_kwargs()) as container:
            follower = EventFollower(run_dir / "events.jsonl")
            end = self._wait(container, timeout_s, follower, on_event)
            for event in follower.poll():
                on_event(event)
            state = self._inspect(container)
            self._save_logs(container, run_dir / LOG_NAME)
        return classify(end, state, run_dir / LOG_NAME, timeout_s, self.stall_note)

    @contextlib.contextmanager
    def _container(self, create_kwargs: dict[str, Any]) -> Iterator[Any]:
        container = self.engine.create(**create_kwargs)
        try:
            _start(container)
            yield container
        finally:
            # Removed in every case: success, failure, timeout, Ctrl-C, or a bug of ours.
            self.engine.remove(container)

    def _wait(self, container: Any, timeout_s: float | None, follower: EventFollower,
              on_event: EventCallback) -> EndKind | None:
        try:
            return self.supervise(lambda: _status(container) in ("created", "running"),
                                  lambda: self._stop(container), timeout_s, follower, on_event,
                                  POLL_S)
        except BaseException:
            _kill(container)  # second Ctrl-C: stop now; removal follows in _container
            raise

    def _stop(self, container: Any) -> None:
        """SIGTERM, then SIGKILL after the grace period (Docker's own stop semantics)."""
        with contextlib.suppress(Exception):
            container.stop(timeout=int(self.grace_s))

    def _inspect(self, container: Any) -> dict[str, Any]:
        with contextlib.suppress(Exception):
            container.reload()
        return dict(container.attrs.get("State", {}))

    def _save_logs(self, container: Any, path: Path) -> None:
        try:
            logs = container.logs(stdout=True, stderr=True)
        except Exception as error:  # the engine may have lost them; say so in the log file
            logs = f"(container logs unavailable: {error})\n".encode()
        write_bytes(path, logs)


def classify(end: EndKind | None, state: dict[str, Any], log_path: Path,
             timeout_s: float | None, stall_note: str = "") -> RunOutcome:
    """Name how a container ended from what we did to it and what the engine reports."""
    tail = log_tail(log_path)
    code = state.get("ExitCode")
    if end == "timeout":
        return RunOutcome("timeout", code, f"exceeded its timeout of {timeout_s:g} s; stopped "
                          "and removed", tail)
    if end == "stalled":
        return RunOutcome("stalled", code, f"{stall_note} and removed", tail)
    if end == "interrupted":
        return RunOutcome("interrupted", code, "stopped by the user", tail)
    if state.get("OOMKilled") and code == EXIT_SIGKILL:
        return RunOutcome("oom", code, "the container ran out of memory (OOMKilled, exit 137)",
                          tail)
    if code == 0:
        return RunOutcome("ok", 0)
    if code in (EXIT_SIGKILL, EXIT_SIGTERM, EXIT_INTERRUPTED):
        return RunOutcome("killed", code, f"the container was stopped from outside (exit {code})",
                          tail)
    return RunOutcome("error", code, f"the harness exited with status {code}", tail)


def clean_orphans(engine: Engine, current: Session | None = None) -> list[str]:
    """Remove containers of dead sessions; return their names."""
    removed = []
    for container in orphans(engine.containers(LABEL_SESSION), current):
        engine.remove(container)
        removed.append(str(container.name))
    return removed


def _is_cpu(image: ImageInfo) -> bool:
    return image.labels.get("llem.device") == "cpu" or image.labels.get("llem.image") == "cpu"


def _status(container: Any) -> str:
    container.reload()
    return str(container.status)


def _start(container: Any) -> None:
    from orchestrator.runners.docker.api import docker_errors

    docker_errors(container.start)()


def _kill(container: Any) -> None:
    with contextlib.suppress(Exception):
        container.kill()
