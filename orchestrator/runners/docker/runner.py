"""Docker runner: one short-lived container per run, removed whatever happens.

The orchestrator enforces the wall-clock timeout itself (the SDK's wait timeout is only an HTTP
timeout), follows ``events.jsonl`` through the bind mount for progress and liveness, saves the
logs to ``container.log``, inspects the container before removing it, and classifies the end.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from harness.errors import RunnerError
from harness.io import write_bytes
from harness.schema.catalog import BY_NAME, CATALOG
from harness.schema.reading import read_model
from harness.schema.run_spec import RunSpec
from orchestrator.runners.base import (
    LOG_NAME,
    EndKind,
    EventCallback,
    EventFollower,
    ProcessEnd,
    Runner,
    RunOutcome,
    classify_end,
    log_tail,
)
from orchestrator.runners.docker.api import (
    Engine,
    EngineError,
    EngineUnreachable,
    ImageInfo,
    NotFoundError,
    RunContainer,
)
from orchestrator.runners.docker.images import IMAGE_NAMES, image_ref
from orchestrator.runners.docker.labels import IMAGE, IMAGE_DEVICE, LABEL_SESSION
from orchestrator.runners.docker.plan import MachineSettings, plan_container
from orchestrator.runners.docker.sessions import orphans
from orchestrator.runners.session import Session

POLL_S = 0.1
GRACE_S = 10.0
EXIT_SIGKILL, EXIT_SIGTERM = 137, 143

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
            return self._problems(backends)
        except RunnerError as error:  # no engine, or it went away while we asked
            return [str(error)]

    def _problems(self, backends: set[str] | None) -> list[str]:
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
        """Run ``run_dir/experiment.json`` in a fresh container and classify its end.

        An engine that stops answering mid-run ends the run as an error, "Docker engine lost",
        marked fatal so the study stops (every later run would fail the same way). Its
        container, if the engine still has one, belongs to this session, which is dead by the
        time anyone can reach the engine again: the next study or ``llem clean`` removes it.
        """
        try:
            return self._run(run_dir, timeout_s, on_event, gpus)
        except EngineUnreachable as error:
            return _engine_lost(error, run_dir / LOG_NAME)
        except EngineError as error:  # refused (create, start, inspect): this run failed
            return _engine_refused(error, run_dir / LOG_NAME)

    def _run(self, run_dir: Path, timeout_s: float | None, on_event: EventCallback,
             gpus: list[int] | None) -> RunOutcome:
        spec = read_model(run_dir / "experiment.json", RunSpec)
        ref = self.image_for(spec.config.backend)
        image = self.engine.image(ref)
        plan = plan_container(
            run_dir, spec, ref, image.id, image.digest, self.session,
            MachineSettings.detect(), gpu_ids=None if _is_cpu(image) else (gpus or []),
            mem_limit=self.mem_limit, shm_size=self.shm_size,
        )
        follower = EventFollower(run_dir / "events.jsonl")
        outcome: RunOutcome | None = None
        try:
            # Removed on leaving the block in every case: success, failure, timeout, Ctrl-C.
            with self.engine.run_container(plan.create_kwargs()) as container:
                end = self._wait(container, timeout_s, follower, on_event)
                for event in follower.poll():
                    on_event(event)
                state = _final_state(container)
                write_bytes(run_dir / LOG_NAME, _logs(container))
                outcome = classify(end, state, run_dir / LOG_NAME, timeout_s, self.stop_note)
        except EngineError as error:
            if outcome is None:
                raise
            # Only the removal failed: the run had ended and is classified already. What is
            # left belongs to this session; the next study or `llem clean` removes it.
            outcome.fatal = isinstance(error, EngineUnreachable)
        return outcome

    def _wait(self, container: RunContainer, timeout_s: float | None,
              follower: EventFollower, on_event: EventCallback) -> EndKind | None:
        try:
            return self.supervise(lambda: _running(container), lambda: self._stop(container),
                                  timeout_s, follower, on_event, POLL_S)
        except BaseException:
            _kill(container)  # second Ctrl-C (or a bug): stop now; removal follows on exit
            raise

    def _stop(self, container: RunContainer) -> None:
        """SIGTERM, then SIGKILL after the grace period (Docker's own stop semantics)."""
        try:
            container.stop(self.grace_s)
        except NotFoundError:
            return  # removed from outside meanwhile: nothing left to stop


def _engine_lost(error: EngineUnreachable, log_path: Path) -> RunOutcome:
    cause = error.__cause__ or error.message
    message = f"Docker engine lost: {cause}"
    with open(log_path, "a", encoding="utf-8") as log:  # appended: keep what came before
        log.write(f"llem: {message}; the container's own logs are unavailable\n")
    return RunOutcome("error", None, message, log_tail(log_path), fatal=True)


def _engine_refused(error: EngineError, log_path: Path) -> RunOutcome:
    message = error.message
    with open(log_path, "a", encoding="utf-8") as log:  # appended: keep what came before
        log.write(f"llem: {message}\n")
    return RunOutcome("error", None, message, log_tail(log_path))


def classify(end: EndKind | None, state: dict[str, Any], log_path: Path,
             timeout_s: float | None, stop_note: str = "") -> RunOutcome:
    """Name how a container ended from what we did to it and what the engine reports."""
    code = state.get("ExitCode")
    # 130 is not a signal's: the harness exits 130 itself after catching SIGTERM or SIGINT.
    signalled = code - 128 if code in (EXIT_SIGKILL, EXIT_SIGTERM) else None
    ended = ProcessEnd(code, signalled, oom=bool(state.get("OOMKilled")) and code == EXIT_SIGKILL)
    return classify_end(end, ended, log_path, timeout_s=timeout_s, stop_note=stop_note,
                        after_stop="; stopped and removed")


def clean_orphans(engine: Engine, current: Session | None = None,
                  study: str | None = None) -> list[str]:
    """Remove containers of dead sessions (of ``study`` only, when given); their names."""
    removed = []
    for container in orphans(engine.containers(LABEL_SESSION), current, study):
        engine.remove(container)
        removed.append(container.name)
    return removed


def _is_cpu(image: ImageInfo) -> bool:
    return image.labels.get(IMAGE_DEVICE) == "cpu" or image.labels.get(IMAGE) == "cpu"


def _running(container: RunContainer) -> bool:
    try:
        # A paused container has not ended (the engine reports ExitCode 0 for it): it is
        # followed like a running one, so the stall check or the timeout stops it.
        return container.status() in ("created", "running", "paused", "restarting")
    except NotFoundError:
        return False  # removed from outside: it is not running any more


def _final_state(container: RunContainer) -> dict[str, Any]:
    try:
        return container.state()
    except NotFoundError:
        return {}  # removed from outside before we could look: classified as an error


def _logs(container: RunContainer) -> bytes:
    try:
        return container.logs()
    except NotFoundError as error:  # removed from outside: say so in the log file
        return f"(container logs unavailable: {error})\n".encode()


def _kill(container: RunContainer) -> None:
    # Best effort by design: the container may have ended already (the engine refuses to kill
    # it) or the engine may be gone; leaving the `with` block removes it either way, or leaves
    # it to the orphan cleanup when the engine is gone.
    with contextlib.suppress(EngineError):
        container.kill()
