"""The one boundary to the Docker Engine: SDK errors become llem errors here, nowhere else.

Every call into the Docker SDK is made in this module, through :func:`docker_errors`, so the
rest of llem sees only :class:`EngineError` and its subclasses. A run's container is a
:class:`RunContainer` (a context manager, like testcontainers-python's ``DockerContainer``):
created and started on entry, removed on exit, with status, stop, kill, logs and wait.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from harness.errors import RunnerError
from orchestrator.runners.docker.labels import IMAGE

P = ParamSpec("P")
T = TypeVar("T")

ENGINE_FIX = "start the Docker engine (systemctl start docker) or point DOCKER_HOST at one"
CLIENT_TIMEOUT_S = 120


class EngineError(RunnerError):
    """The Docker engine refused or failed an operation."""


class NotFoundError(EngineError):
    """The image or container named does not exist (any more)."""


class EngineUnreachable(EngineError):
    """No answer from the Docker engine: never reached, or lost (socket closed, daemon gone)."""

    fatal = True


def docker_errors(function: Callable[P, T]) -> Callable[P, T]:
    """Translate Docker SDK and transport errors raised by ``function`` into EngineError."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        import docker.errors
        import urllib3.exceptions

        try:
            return function(*args, **kwargs)
        except docker.errors.ImageNotFound as error:
            raise NotFoundError(f"image not found: {error.explanation or error}",
                                fix="build it with: llem images build BACKEND") from error
        except docker.errors.NotFound as error:
            raise NotFoundError(f"Docker object not found: {error.explanation or error}"
                                ) from error
        except docker.errors.APIError as error:
            raise EngineError(f"the Docker engine refused: {error.explanation or error}"
                              ) from error
        # requests' ConnectionError and Timeout are OSErrors; urllib3 errors may escape it.
        except (docker.errors.DockerException, OSError, urllib3.exceptions.HTTPError) as error:
            raise EngineUnreachable(f"no answer from the Docker engine: {error}",
                                    fix=ENGINE_FIX) from error

    return wrapper


@dataclass(frozen=True)
class ImageInfo:
    """An image as the engine describes it."""

    ref: str
    id: str
    digest: str | None
    labels: dict[str, str]
    size_bytes: int
    tags: list[str]


@dataclass(frozen=True)
class ContainerRef:
    """A container as the engine lists it (a snapshot: no live handle to the SDK)."""

    id: str
    name: str
    labels: dict[str, str]
    status: str


class Engine:
    """A connected Docker client with the few operations llem needs.

    Args:
        client: a ``docker.DockerClient``; ``docker.from_env()`` when None (honours
            DOCKER_HOST).
    """

    def __init__(self, client: Any = None) -> None:
        self.client = client if client is not None else _connect()

    @docker_errors
    def ping(self) -> str:
        """Server version; raises EngineUnreachable when the engine does not answer."""
        self.client.ping()
        return str(self.client.version().get("Version", "unknown"))

    @docker_errors
    def info(self) -> dict[str, Any]:
        """``docker info`` as a dict."""
        return dict(self.client.info())

    @docker_errors
    def image(self, ref: str) -> ImageInfo:
        """Describe ``ref``; NotFoundError with the build command when it is missing."""
        image = self.client.images.get(ref)
        return _image_info(ref, image)

    def has_image(self, ref: str) -> bool:
        """True when the engine holds ``ref`` (EngineUnreachable when it cannot say)."""
        try:
            self.image(ref)
        except NotFoundError:
            return False
        return True

    @docker_errors
    def llem_images(self) -> list[ImageInfo]:
        """Every image labelled as a llem image."""
        images = self.client.images.list(filters={"label": IMAGE})
        return [_image_info(image.tags[0] if image.tags else image.short_id, image)
                for image in images]

    @docker_errors
    def containers(self, label: str) -> list[ContainerRef]:
        """All containers (running or not) carrying ``label``.

        A container removed between the listing and its inspection (a run that just ended) is
        left out rather than failing the whole listing.
        """
        found = self.client.containers.list(all=True, filters={"label": label},
                                            ignore_removed=True)
        return [ContainerRef(str(c.id), str(c.name), dict(c.labels or {}), str(c.status))
                for c in found]

    def run_container(self, create_kwargs: dict[str, Any]) -> RunContainer:
        """A container for one run, created and started when its ``with`` block begins."""
        return RunContainer(self, create_kwargs)

    @docker_errors
    def remove(self, container: ContainerRef | RunContainer | str) -> None:
        """Remove a container (by reference or id) whatever its state; gone already is fine."""
        import docker.errors

        key = container if isinstance(container, str) else container.id
        try:
            self.client.api.remove_container(key, force=True, v=True)
        except docker.errors.NotFound:
            return  # already gone: what we wanted
        except docker.errors.APIError as error:
            # Another client (its own session ending, `docker run --rm`, a second llem) is
            # removing it right now: it is going away, which is what we wanted too.
            if error.status_code == 409 and "already in progress" in str(error):
                return
            raise


class RunContainer:
    """One run's container, owned by a ``with`` block: removed on exit whatever happened.

    Args:
        engine: the engine that creates it.
        create_kwargs: ``containers.create`` arguments (see ``ContainerPlan.create_kwargs``).
    """

    def __init__(self, engine: Engine, create_kwargs: dict[str, Any]) -> None:
        self._engine = engine
        self._kwargs = create_kwargs
        self._container: Any = None

    @property
    def id(self) -> str:
        """The container's id (empty before it is created)."""
        return "" if self._container is None else str(self._container.id)

    @property
    def name(self) -> str:
        """The container's name (empty before it is created)."""
        return "" if self._container is None else str(self._container.name)

    def __enter__(self) -> RunContainer:
        self._create()
        try:
            self._start()
        except BaseException:
            self._remove_quietly()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            self._engine.remove(self)  # an engine lost here surfaces to the caller
        else:
            self._remove_quietly()

    def _remove_quietly(self) -> None:
        # Only while another exception is on its way out: that one is the story to tell. A
        # container this leaves behind belongs to a session that ends with the exception, and
        # the next study or `llem clean` removes it.
        with contextlib.suppress(EngineError):
            self._engine.remove(self)

    @docker_errors
    def _create(self) -> None:
        self._container = self._engine.client.containers.create(**self._kwargs)

    @docker_errors
    def _start(self) -> None:
        self._container.start()

    @docker_errors
    def status(self) -> str:
        """The status as the engine says now: created, running, exited, ..."""
        self._container.reload()
        return str(self._container.status)

    @docker_errors
    def state(self) -> dict[str, Any]:
        """The engine's ``State`` record now (ExitCode, OOMKilled, Status, ...)."""
        self._container.reload()
        return dict(self._container.attrs.get("State", {}))

    @docker_errors
    def stop(self, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after ``grace_s`` seconds (Docker's stop); waits for the end."""
        self._container.stop(timeout=max(1, round(grace_s)))

    @docker_errors
    def kill(self) -> None:
        """SIGKILL now (EngineError when it already ended: the engine refuses)."""
        self._container.kill()

    @docker_errors
    def logs(self) -> bytes:
        """Everything the container wrote to stdout and stderr so far."""
        return bytes(self._container.logs(stdout=True, stderr=True))

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Block until the container ends.

        Args:
            timeout_s: seconds to wait at most (None: no limit).

        Returns:
            Its exit code, or None when it did not end within ``timeout_s``.
        """
        try:
            return self._wait(timeout_s)
        except EngineUnreachable as error:
            if _read_timed_out(error.__cause__):
                return None
            raise

    @docker_errors
    def _wait(self, timeout_s: float | None) -> int:
        return int(self._container.wait(timeout=timeout_s)["StatusCode"])


def _read_timed_out(error: BaseException | None) -> bool:
    """True for the SDK's HTTP read timeout (how its ``wait(timeout=...)`` ends early)."""
    import requests.exceptions

    return isinstance(error, requests.exceptions.ReadTimeout) or (
        isinstance(error, requests.exceptions.ConnectionError) and "timed out" in str(error))


def _connect() -> Any:
    @docker_errors
    def connect() -> Any:
        import docker

        client = docker.from_env(timeout=CLIENT_TIMEOUT_S)
        client.ping()
        return client

    return connect()


def _image_info(ref: str, image: Any) -> ImageInfo:
    attrs = image.attrs
    digests = attrs.get("RepoDigests") or []
    return ImageInfo(
        ref=ref,
        id=str(image.id),
        digest=digests[0] if digests else None,
        labels=dict(attrs.get("Config", {}).get("Labels") or {}),
        size_bytes=int(attrs.get("Size", 0)),
        tags=list(image.tags),
    )
