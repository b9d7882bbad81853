"""The one boundary to the Docker Engine: SDK errors become llem errors here, nowhere else."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from harness.errors import RunnerError

P = ParamSpec("P")
T = TypeVar("T")

ENGINE_FIX = "start the Docker engine (systemctl start docker) or point DOCKER_HOST at one"


def docker_errors(function: Callable[P, T]) -> Callable[P, T]:
    """Translate Docker SDK and transport errors raised by ``function`` into ``RunnerError``."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        import docker.errors
        import requests.exceptions

        try:
            return function(*args, **kwargs)
        except docker.errors.ImageNotFound as error:
            raise RunnerError(f"image not found: {error.explanation or error}",
                              fix="build it with: llem images build BACKEND") from error
        except docker.errors.NotFound as error:
            raise RunnerError(f"Docker object not found: {error.explanation or error}") from error
        except docker.errors.APIError as error:
            raise RunnerError(f"the Docker engine refused: {error.explanation or error}") from error
        except (docker.errors.DockerException, requests.exceptions.ConnectionError) as error:
            raise RunnerError(f"no Docker engine reachable: {error}", fix=ENGINE_FIX) from error

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


class Engine:
    """A connected Docker client with the few operations llem needs.

    Args:
        client: a ``docker.DockerClient``; ``docker.from_env()`` when None.
    """

    def __init__(self, client: Any = None) -> None:
        self.client = client if client is not None else _connect()

    @docker_errors
    def ping(self) -> str:
        """Server version; raises RunnerError when the engine does not answer."""
        self.client.ping()
        return str(self.client.version().get("Version", "unknown"))

    @docker_errors
    def info(self) -> dict[str, Any]:
        """``docker info`` as a dict."""
        return dict(self.client.info())

    @docker_errors
    def image(self, ref: str) -> ImageInfo:
        """Describe ``ref``; RunnerError with the build command when it is missing."""
        image = self.client.images.get(ref)
        return _image_info(ref, image)

    def has_image(self, ref: str) -> bool:
        """True when the engine holds ``ref``."""
        try:
            self.image(ref)
        except RunnerError:
            return False
        return True

    @docker_errors
    def llem_images(self) -> list[ImageInfo]:
        """Every image labelled as a llem image."""
        images = self.client.images.list(filters={"label": "llem.image"})
        return [_image_info(image.tags[0] if image.tags else image.short_id, image)
                for image in images]

    @docker_errors
    def containers(self, label: str) -> list[Any]:
        """All containers (running or not) carrying ``label``.

        A container removed between the listing and its inspection (a run that just ended) is
        left out rather than failing the whole listing.
        """
        return list(self.client.containers.list(all=True, filters={"label": label},
                                                ignore_removed=True))

    @docker_errors
    def create(self, **kwargs: Any) -> Any:
        """Create (not start) a container."""
        return self.client.containers.create(**kwargs)

    @docker_errors
    def remove(self, container: Any) -> None:
        """Remove a container whatever its state."""
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):  # already gone: what we wanted
            container.remove(force=True, v=True)


def _connect() -> Any:
    @docker_errors
    def connect() -> Any:
        import docker

        client = docker.from_env(timeout=120)
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
