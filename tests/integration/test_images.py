"""The cpu image built by images/build.sh: the shared install step ran, the shared labels apply."""

from __future__ import annotations

import subprocess

import pytest

from orchestrator.runners.docker.api import Engine

pytestmark = pytest.mark.docker


def test_cpu_image_carries_the_shared_labels(engine: Engine, cpu_image: str) -> None:
    labels = engine.image(cpu_image).labels
    assert (labels["llem.image"], labels["llem.backend"], labels["llem.device"]) == (
        "cpu", "pytorch", "cpu")
    assert labels["llem.base"] == "llem/base:bookworm"
    assert labels["llem.harness_version"] == labels["org.opencontainers.image.version"] != ""
    assert labels["llem.backend_version"][:1].isdigit()  # torch's, from requirements.lock
    assert len(labels["llem.build_inputs"]) == 16
    assert labels["org.opencontainers.image.title"] == "llem-cpu"
    assert "llem.stage" not in labels  # only the dependency stage carries it


def test_cpu_image_install_step_left_nothing_behind(cpu_image: str) -> None:
    probe = ("import os, shutil, harness; "
             "print(os.path.exists('/tmp/llem-install'), shutil.which('python'))")
    done = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", cpu_image,
         "-c", probe], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "/opt/llem/bin/python"]
