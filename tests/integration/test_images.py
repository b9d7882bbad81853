"""The cpu image built by images/build.sh: the shared install step ran, the shared labels apply."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from orchestrator.runners.docker.api import Engine

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]


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


def test_label_line_survives_the_dockerfile_parser(cpu_image: str, tmp_path: Path) -> None:
    # cpu_image: its build made llem/base:bookworm, the base of this throwaway image.
    values = {"llem.test.quotes": 'say "hi" \\ $HOME x', "llem.test.pairs": "k=v, y"}
    script = f'source "{REPO}/images/common/labels.sh" && label_instruction "$@"'
    pairs = [f"{key}={value}" for key, value in values.items()]
    line = subprocess.run(["bash", "-c", script, "labels", *pairs],
                          capture_output=True, text=True, check=True).stdout
    (tmp_path / "Dockerfile").write_text(f"FROM llem/base:bookworm\n{line}")
    tag = f"llem-test/labels:{uuid.uuid4().hex[:12]}"
    subprocess.run(["docker", "build", "--quiet", "--tag", tag, str(tmp_path)],
                   capture_output=True, text=True, check=True, timeout=600)
    try:
        labels = json.loads(subprocess.run(
            ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", tag],
            capture_output=True, text=True, check=True).stdout)
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)
    assert {key: labels.get(key) for key in values} == values


def _layers(image: str) -> list[str]:
    done = subprocess.run(["docker", "image", "inspect", "--format", "{{json .RootFS.Layers}}",
                           image], capture_output=True, text=True, check=True)
    return list(json.loads(done.stdout))


def test_cpu_image_is_its_dependency_image_plus_the_harness(cpu_image: str) -> None:
    tags = subprocess.run(["docker", "image", "ls", "--format", "{{.Tag}}", "llem/build-cache"],
                          capture_output=True, text=True, check=True).stdout.split()
    deps = [tag for tag in tags if tag.startswith("cpu-deps-")]
    assert len(deps) == 1, tags  # earlier fingerprints were removed
    deps_layers = _layers(f"llem/build-cache:{deps[0]}")
    image_layers = _layers(cpu_image)
    assert image_layers[:len(deps_layers)] == deps_layers
    assert len(image_layers) > len(deps_layers)  # the harness on top
    # No wheel reached any layer: they were bind-mounted into the install container only
    # (python3-venv's own pip and setuptools wheels belong to the Debian base).
    find = "find / -xdev -name '*.whl' -not -path '/usr/share/python-wheels/*' | head -n 5"
    probe = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", cpu_image, "-c",
         f"{find}; test -z \"$(ls -A /mnt)\" && echo none"],
        capture_output=True, text=True, timeout=300, check=False)
    assert probe.stdout.split() == ["none"], probe.stdout + probe.stderr
    leftovers = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter",
                                "name=llem-build-"], capture_output=True, text=True, check=True)
    assert leftovers.stdout.strip() == ""
