"""Fixtures for tests against the real Docker engine and the image the project builds.

Without a reachable engine these tests skip, unless LLEM_REQUIRE_DOCKER=1 (CI), where a skip
would prove nothing and becomes a failure.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.runners.docker.api import Engine

REPO = Path(__file__).resolve().parents[2]
CPU_IMAGE = "llem/cpu:latest"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    docker_items = [item for item in items if "docker" in item.keywords]
    if not docker_items:
        return
    # Docker tests last: a test process that reaches one waits for the image (built in the
    # background by `make test`, several minutes when cold); until then it runs everything else.
    # Those needing the vllm-cpu image come last of all: its build (minutes when cold) holds the
    # build lock, so by then every test process should have its cpu image fixture done.
    vllm_cpu = [item for item in docker_items
                if "vllm_cpu_image" in getattr(item, "fixturenames", ())]
    items[:] = ([item for item in items if "docker" not in item.keywords]
                + [item for item in docker_items if item not in vllm_cpu] + vllm_cpu)
    try:
        Engine().ping()
    except Exception as error:  # any failure to reach the engine
        if os.environ.get("LLEM_REQUIRE_DOCKER") == "1":
            raise pytest.UsageError(
                f"LLEM_REQUIRE_DOCKER=1 but no Docker engine is reachable: {error}") from error
        for item in docker_items:
            item.add_marker(pytest.mark.skip(reason=f"no Docker engine: {error}"))


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine()


def _build(image: str) -> str:
    """``llem/<image>:latest`` built from images/ with this checkout's harness (layer-cached)."""
    done = subprocess.run(["bash", str(REPO / "images" / "build.sh"), image], cwd=REPO,
                          capture_output=True, text=True, timeout=3600, check=False)
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"image build failed:\n{output}"
    return f"llem/{image}:latest"


@pytest.fixture(scope="session")
def cpu_image(engine: Engine) -> str:
    """llem/cpu:latest built from images/ with the harness of this checkout (layer-cached)."""
    return _build("cpu")


@pytest.fixture(scope="session")
def vllm_cpu_image(engine: Engine) -> str:
    """llem/vllm-cpu:latest (vLLM's CPU build), built like the cpu image, on its dependencies."""
    return _build("vllm-cpu")

