"""The image recipes share one install step and one label recipe (images/common/).

The GPU images cannot be built without their registries, so their Dockerfiles are checked by
parsing; the install script runs here in a throwaway virtual environment, and the cpu image
build (tests/integration/test_images.py) runs it inside Docker.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

from harness.engine_cache import engine_runtime_in

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
INSTALL = "bash /tmp/llem-install/install.sh"
# What differs between the images: the extras installed and the modules checked.
INSTALL_ARGS = {
    "cpu": "--offline pytorch",
    "pytorch": '"pytorch${LLEM_EXTRAS:+,$LLEM_EXTRAS}" torch transformers',
    "vllm": '"${LLEM_EXTRAS}"',
    "tensorrt": '"${LLEM_EXTRAS}"',
}
LABEL_KEYS = {
    "llem.image", "llem.backend", "llem.device", "llem.backend_version", "llem.harness_version",
    "llem.base", "org.opencontainers.image.title", "org.opencontainers.image.description",
    "org.opencontainers.image.version",
}
# Pieces of the former per-Dockerfile install and label blocks.
DUPLICATED = ["pip list", "PIP_BREAK_SYSTEM_PACKAGES", "ln -s", "llem-*.whl", "import harness",
              "org.opencontainers", "HARNESS_VERSION", "BACKEND_VERSION", "BUILD_INPUTS"]


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of images/<name>/Dockerfile, continuations joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in (IMAGES / name / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        result.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return result


def final_stage(name: str) -> list[tuple[str, str]]:
    steps = instructions(name)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


@pytest.mark.parametrize("name", sorted(INSTALL_ARGS))
def test_every_image_installs_through_the_shared_step(name: str) -> None:
    stage = final_stage(name)
    assert ("COPY", "harness/ /tmp/llem-install/") in stage
    assert [arguments for keyword, arguments in stage if keyword == "RUN"] == [
        f"{INSTALL} {INSTALL_ARGS[name]}"]


@pytest.mark.parametrize("name", sorted(INSTALL_ARGS))
def test_no_dockerfile_keeps_an_install_or_label_block(name: str) -> None:
    steps = instructions(name)
    leftovers = [(piece, arguments) for piece in DUPLICATED for _, arguments in steps
                 if piece in arguments]
    assert leftovers == []
    labels = [arguments for keyword, arguments in steps if keyword == "LABEL"]
    assert labels == []


GPU_IMAGES = ("pytorch", "vllm", "tensorrt")


def base_image(name: str) -> str:
    """The ``BASE_IMAGE`` default of images/<name>/Dockerfile (what build.sh builds on)."""
    (base,) = [arguments.removeprefix("BASE_IMAGE=") for keyword, arguments in instructions(name)
               if keyword == "ARG" and arguments.startswith("BASE_IMAGE=")]
    return base


@pytest.mark.parametrize("name", GPU_IMAGES)
def test_the_docs_name_the_base_each_gpu_image_is_built_on(name: str) -> None:
    base = base_image(name)
    repository, _, pin = base.rpartition(":")
    overview = (IMAGES / "README.md").read_text()
    assert f"| `llem/{name}` | `{base}` |" in overview
    assert f"| `llem/{name}` | `{repository}` | `{pin}` |" in overview  # the pins' table
    backends = (REPO / "docs" / "backends.md").read_text()
    assert f"| `llem/{name}` | `{base}` |" in backends


def test_the_tensorrt_image_pins_a_release_with_both_runtimes() -> None:
    repository, _, pin = base_image("tensorrt").rpartition(":")
    assert repository == "nvcr.io/nvidia/tensorrt-llm/release"
    assert engine_runtime_in(pin) is True  # tensorrt.runtime: engine
    assert Version(pin) >= Version("1.0")  # tensorrt.runtime: pytorch
    # The pin is the build argument build.sh and `llem images build --base` replace.
    build = (IMAGES / "build.sh").read_text()
    assert '--build-arg "BASE_IMAGE=$base_image"' in build
    assert "FROM ${BASE_IMAGE}" in (IMAGES / "tensorrt" / "Dockerfile").read_text()


def test_the_cpu_image_starts_from_its_dependency_image_and_copies_no_wheels() -> None:
    steps = instructions("cpu")
    assert [arguments for keyword, arguments in steps if keyword == "FROM"] == ["${DEPS_IMAGE}"]
    assert not [arguments for keyword, arguments in steps
                if keyword == "COPY" and ("deps" in arguments or "--from" in arguments)]


def test_the_dependencies_install_in_a_container_with_the_wheels_mounted_read_only() -> None:
    script = (IMAGES / "common" / "install-deps.sh").read_text()
    assert "--no-index" in script and "--find-links /mnt -r /mnt/requirements.lock" in script
    build = " ".join((IMAGES / "build.sh").read_text().replace("\\\n", " ").split())
    assert ('--network none --volume "$context/deps:/mnt:ro" "$from" /bin/sh -s'
            in build)
    assert '"$DOCKER" commit' in build
    # The build context of the image itself leaves the wheels out.
    assert "printf '%s\\n' deps >\"$context/.dockerignore\"" in build


def image_labels(*args: str) -> subprocess.CompletedProcess[str]:
    script = f'source "{IMAGES}/common/labels.sh" && image_labels "$@"'
    return subprocess.run(["bash", "-c", script, "labels", *args],
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize(("name", "backend", "device"), [
    ("cpu", "pytorch", "cpu"), ("pytorch", "pytorch", "cuda"),
    ("vllm", "vllm", "cuda"), ("tensorrt", "tensorrt", "cuda")])
def test_one_label_recipe_for_every_image(name: str, backend: str, device: str) -> None:
    done = image_labels(name, "base:1", "9.9.9", "0.1.0")
    assert done.returncode == 0, done.stderr
    labels = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert set(labels) == LABEL_KEYS
    assert (labels["llem.image"], labels["llem.backend"], labels["llem.device"]) == (
        name, backend, device)
    assert (labels["llem.backend_version"], labels["llem.harness_version"],
            labels["llem.base"]) == ("9.9.9", "0.1.0", "base:1")
    assert labels["org.opencontainers.image.title"] == f"llem-{name}"
    assert labels["org.opencontainers.image.version"] == "0.1.0"


def test_label_recipe_rejects_an_unknown_image() -> None:
    done = image_labels("tpu", "base:1", "1", "0.1.0")
    assert done.returncode == 2
    assert "unknown image 'tpu'" in done.stderr


def test_labels_become_one_quoted_label_instruction() -> None:
    script = (f'source "{IMAGES}/common/labels.sh" && '
              'label_instruction "$@"')
    done = subprocess.run(["bash", "-c", script, "labels", "a.b=x y", 'q=say "hi" \\ $HOME',
                           "eq=k=v"], capture_output=True, text=True, check=False)
    assert done.stdout == 'LABEL "a.b"="x y" "q"="say \\"hi\\" \\\\ \\$HOME" "eq"="k=v"\n'


def test_build_script_appends_the_labels_and_fingerprints_them() -> None:
    build = (IMAGES / "build.sh").read_text()
    assert 'source "$images_dir/common/labels.sh"' in build
    assert 'mapfile -t labels < <(image_labels "$backend" "$base_image"' in build
    # The Dockerfile sent is the image's own plus the one LABEL line, build_inputs included.
    assert '{ cat "$dockerfile"; echo; label_instruction "${labels[@]}"' in build
    assert '"llem.build_inputs=$fingerprint"; } | "$DOCKER" build' in build
    assert "--file - " in " ".join(build.split())
    assert 'printf \'%s\\n\' "${labels[@]}"' in build  # the labels are in the fingerprint


# --- images/common/install.sh, run on this host in a virtual environment ---------------------

def _fake_llem_wheel(directory: Path, version: str = "0.0.1", mark: str = "") -> Path:
    """A wheel named llem with a ``harness`` package (``MARK``, default the version)."""
    dist = f"llem-{version}.dist-info"
    files = {
        "harness/__init__.py": f"MARK = {mark or version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: llem\nVersion: {version}\n"
                            "Provides-Extra: tools\nRequires-Dist: pip; extra == \"tools\"\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{dist}/RECORD"])
    path = directory / f"llem-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return path


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path


def _run_install(venv: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    install_dir = tmp_path / "llem-install"
    install_dir.mkdir()
    (install_dir / "install.sh").write_bytes((IMAGES / "common" / "install.sh").read_bytes())
    _fake_llem_wheel(install_dir)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(["bash", str(install_dir / "install.sh"), *args], env=env,
                          capture_output=True, text=True, check=False, timeout=600)


def _installed_mark(venv: Path, cwd: Path) -> str:
    probe = "import harness; print(harness.MARK)"
    check = subprocess.run([str(venv / "bin" / "python"), "-c", probe],
                           capture_output=True, text=True, check=False, cwd=cwd, env={})
    return check.stdout.strip() or check.stderr


@pytest.mark.slow
def test_install_script_installs_the_wheel_with_its_extras(venv: Path, tmp_path: Path) -> None:
    done = _run_install(venv, tmp_path, "--offline", "tools", "json")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "llem-install").exists()  # nothing left in the image
    assert _installed_mark(venv, tmp_path) == "0.0.1"  # the fake wheel's, not this checkout's


@pytest.mark.slow
def test_install_script_replaces_an_llem_already_in_the_base(venv: Path, tmp_path: Path) -> None:
    # Same version, other content: pip alone would call it installed already.
    older = _fake_llem_wheel(tmp_path, "0.0.1", mark="from the base")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--force-reinstall", str(older)], check=True)
    done = _run_install(venv, tmp_path, "--offline", "")
    assert done.returncode == 0, done.stderr
    assert _installed_mark(venv, tmp_path) == "0.0.1"


@pytest.mark.slow
def test_install_script_fails_when_a_module_does_not_import(venv: Path, tmp_path: Path) -> None:
    done = _run_install(venv, tmp_path, "--offline", "", "no_such_module_here")
    assert done.returncode != 0
    assert "No module named 'no_such_module_here'" in done.stderr


def test_install_script_needs_the_extras_argument(tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(IMAGES / "common" / "install.sh")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "EXTRAS missing" in done.stderr
