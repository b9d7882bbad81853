"""``llem images build|list``: the project's image recipes, driven from the CLI.

Building wraps ``images/build.sh`` (argument list, no shell string): it prepares the local
Debian base when no registry answers, downloads wheels on the host and runs the build with
Docker's layer cache. Listing reads labels through the Docker SDK.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.backends.catalog import CATALOG, image_names
from harness.errors import ConfigError, RunnerError
from orchestrator.runners.docker.api import Engine, ImageInfo

IMAGE_NAMES = image_names()
"""Every image recipe: each backend's image and the CPU image (from the backend catalog)."""


def image_ref(name: str) -> str:
    """The reference ``llem images build NAME`` tags: ``llem/<name>:latest``."""
    return f"llem/{name}:latest"
_CPU_IMAGES = tuple(e.cpu_image for e in CATALOG if e.cpu_image)
_GPU_IMAGES = tuple(name for name in IMAGE_NAMES if name not in _CPU_IMAGES)


def images_dir() -> Path:
    """The ``images/`` directory of the source checkout this llem runs from."""
    path = Path(__file__).resolve().parents[1] / "images"
    if not (path / "build.sh").is_file():
        raise RunnerError(
            "image recipes not found next to this installation",
            fix="run llem images build from a source checkout of llem (git clone ...)",
        )
    return path


def build(name: str, base: str | None = None, extras: str | None = None) -> None:
    """Build ``llem/<name>:latest`` with the project's recipe (output goes to the terminal).

    Args:
        name: one of :data:`IMAGE_NAMES`.
        base: base image instead of the Dockerfile's default.
        extras: llem extras to install too (``zeus,codecarbon``); GPU images only.
    """
    if name not in IMAGE_NAMES:
        raise ConfigError(f"unknown image '{name}'", fix=f"use one of {', '.join(IMAGE_NAMES)}")
    if extras and name in _CPU_IMAGES:
        raise ConfigError(f"--extras applies to the GPU images ({', '.join(_GPU_IMAGES)}), not "
                          f"{name}", fix=f"drop --extras: the {name} image has no GPU to measure")
    command = ["bash", str(images_dir() / "build.sh"), name]
    if base:
        command += ["--base", base]
    if extras:
        command += ["--extras", extras]
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise RunnerError(f"building llem/{name} failed (exit {done.returncode})",
                          fix="read the build output above; images/README.md explains each step")


def listing(engine: Engine) -> list[ImageInfo]:
    """Every llem image the engine holds."""
    return sorted(engine.llem_images(), key=lambda image: image.ref)
