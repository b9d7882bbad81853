"""images/common/install-deps.sh when the wheels are not mounted where the engine runs.

A Docker engine on another machine (DOCKER_HOST, a docker context) resolves the bind mount of
images/.wheels/cpu/deps on its own host: /mnt is then empty. The build must say so, not end in
pip's "Could not open requirements file".
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]


def test_install_deps_names_an_unmounted_wheels_directory(cpu_image: str, tmp_path: Path) -> None:
    # cpu_image: its build made the base image this runs in.
    name = f"llem-test-deps-{uuid.uuid4().hex[:8]}"
    script = (REPO / "images" / "common" / "install-deps.sh").read_bytes()
    try:
        done = subprocess.run(
            ["docker", "run", "--interactive", "--name", name, "--network", "none",
             "--entrypoint", "/bin/sh", "--volume", f"{tmp_path}:/mnt:ro", "llem/base:bookworm",
             "-s", "torch"], input=script, capture_output=True, timeout=120, check=False)
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert "not mounted" in stderr and "DOCKER_HOST" in stderr
    assert "Could not open requirements file" not in stderr
