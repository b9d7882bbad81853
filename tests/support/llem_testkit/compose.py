"""`docker compose run` of one service of the project's compose.yaml, in a project of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def compose_command() -> list[str]:
    """``docker compose`` (the plugin) or ``docker-compose`` (Debian's package), whichever runs."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True,
                      check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither 'docker compose' nor 'docker-compose' is installed")


def compose_run(project: Path, model: Path, model_name: str, experiment: str, service: str,
                timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``compose run --rm SERVICE run studies/one.yaml`` in a fresh project directory.

    The project gets compose.yaml, the model under ``.llem/models/MODEL_NAME`` and
    ``studies/one.yaml`` (``experiment``, whose model is ``../.llem/models/MODEL_NAME``).
    """
    (project / "studies").mkdir(parents=True)
    (project / "results").mkdir()
    (project / "hf").mkdir()
    shutil.copy(REPO / "compose.yaml", project / "compose.yaml")
    shutil.copytree(model, project / ".llem" / "models" / model_name)
    (project / "studies" / "one.yaml").write_text(experiment)
    env = {**os.environ, "LLEM_UID": str(os.getuid()), "LLEM_GID": str(os.getgid()),
           "HF_HUB_CACHE": str(project / "hf")}
    return subprocess.run([*compose_command(), "-f", str(project / "compose.yaml"), "run",
                           "--rm", service, "run", "studies/one.yaml"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
