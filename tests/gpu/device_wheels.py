"""Offline installs for `make device-check`: a wheel folder, and a venv made from it.

    python3 tests/gpu/device_wheels.py download DIR        # make device-wheels (needs pip's index)
    python3 tests/gpu/device_wheels.py venv DIR VENV       # make device-check (no network)

The GPU machine is expected to hold PyTorch, transformers, nvidia-ml-py, pyarrow and scipy
(:data:`MACHINE_HAS`, with whatever they require). What the check imports beyond that is
:data:`RESOLVED` (installed with their dependencies) and :data:`NO_DEPS` (installed alone):
``download`` fetches their wheels for CPython 3.10 to 3.13 on manylinux x86_64 with this
machine's own pip configuration and fails above :data:`LIMIT_MB`; ``venv`` makes (or reuses) a
virtual environment that sees the machine's packages and installs from the folder with
``--no-index``: only what the machine lacks, or has in a version too old, is installed.

Standard library only: this runs before pydantic exists on the GPU machine.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

MACHINE_HAS = ("torch", "transformers", "nvidia-ml-py", "pyarrow", "scipy")
"""What the GPU machine is expected to have (with their own requirements)."""

RESOLVED = ("pydantic>=2.6", "httpx")
"""Installed with their dependencies. pydantic: every harness schema. httpx: imported by
``zeus.device`` (through ``zeus.utils.zeusd``)."""

NO_DEPS = ("zeus==0.16.0",)
"""Installed without dependencies. Zeus's ``zeus.device`` needs only httpx and nvidia-ml-py
at import (amdsmi is optional there); its declared requirements (pandas, scikit-learn, tyro,
amdsmi, ...) serve other parts of Zeus and would add over 100 MB. 0.16.0: the version the
harness's Zeus fake mirrors."""

DOWNLOAD_ONLY = ("exceptiongroup",)
"""Needed by anyio on Python < 3.11; named here because ``pip download --python-version``
evaluates requirement markers against the interpreter running pip, not the target."""

NOT_SHIPPED = {
    "click": "harness/__main__.py only: the check runs the harness in-process",
    "ruamel": "harness/__main__.py only (YAML experiment files)",
    "codecarbon": "energy.backend codecarbon, which the check does not compare",
}
"""Third-party modules the harness imports that an in-process PyTorch run never reaches
(vLLM and TensorRT-LLM are imported through importlib, by their backends only)."""

PYTHONS = ("3.10", "3.11", "3.12", "3.13")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
LIMIT_MB = 60.0
STAMP = ".llem-device-wheels.json"


def pip_download(folder: Path, python: str, requirements: list[str], deps: bool) -> None:
    """Fetch the wheels of ``requirements`` for one CPython version into ``folder``."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(folder),
               "--only-binary=:all:", "--implementation", "cp", "--python-version", python,
               *(f"--platform={tag}" for tag in PLATFORMS), *requirements]
    if not deps:
        command.insert(4, "--no-deps")
    subprocess.run(command, check=True)


def download(folder: Path) -> int:
    """``make device-wheels``: every Python version's wheels, then the size check."""
    folder.mkdir(parents=True, exist_ok=True)
    for python in PYTHONS:  # a pure-Python wheel is fetched once, then found in the folder
        pip_download(folder, python, [*RESOLVED, *DOWNLOAD_ONLY], deps=True)
        pip_download(folder, python, list(NO_DEPS), deps=False)
    total_mb = sum(p.stat().st_size for p in folder.glob("*.whl")) / 1e6
    print(f"{len(list(folder.glob('*.whl')))} wheels in {folder}: {total_mb:.1f} MB "
          f"(limit {LIMIT_MB:g} MB)")
    if total_mb > LIMIT_MB:
        print(f"error: the wheels exceed {LIMIT_MB:g} MB", file=sys.stderr)
        return 1
    return 0


def parent_site_packages() -> list[str]:
    """Site directories of this interpreter that a new venv would not see by itself.

    ``venv --system-site-packages`` exposes the *base* installation's packages; when this
    interpreter is itself a virtual environment (as PyTorch images often ship), its own
    site-packages would be hidden, so they are handed on through a .pth file.
    """
    if sys.prefix == sys.base_prefix:
        return []
    return [path for path in site.getsitepackages() if Path(path).is_dir()]


def venv_python(venv: Path) -> Path:
    """The venv's interpreter."""
    return venv / "bin" / "python"


def stamp_of(folder: Path) -> dict[str, object]:
    """What a venv was made from: interpreter, wheels, requirements."""
    wheels = sorted(p.name for p in folder.glob("*.whl")) if folder.is_dir() else []
    return {"python": sys.executable, "wheels": wheels,
            "requirements": [*RESOLVED, *NO_DEPS]}


def create(venv: Path) -> None:
    """A venv that sees the machine's packages, without pip of its own (ensurepip may be absent
    from a distribution's Python; the machine's pip is visible through the site paths)."""
    subprocess.run([sys.executable, "-m", "venv", "--clear", "--system-site-packages",
                    "--without-pip", str(venv)], check=True)
    parents = parent_site_packages()
    if parents:
        purelib = subprocess.run(
            [str(venv_python(venv)), "-c",
             "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True).stdout.strip()
        Path(purelib, "_llem_parent_site.pth").write_text("\n".join(parents) + "\n")


def pip_install(venv: Path, folder: Path, requirements: list[str], deps: bool) -> None:
    """Install from the wheel folder only (no index), skipping what is already satisfied."""
    command = [str(venv_python(venv)), "-m", "pip", "install", "--quiet", "--no-index",
               "--find-links", str(folder), "--no-warn-script-location", *requirements]
    if not deps:
        command.insert(4, "--no-deps")
    env = {**os.environ, "PIP_ROOT_USER_ACTION": "ignore", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(command, check=True, env=env)


def own_packages(venv: Path) -> list[str]:
    """Distributions installed into the venv itself (not seen through the machine's paths)."""
    purelib = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})
                   ["purelib"])
    return sorted(p.name.removesuffix(".dist-info") for p in purelib.glob("*.dist-info"))


def make_venv(folder: Path, venv: Path) -> int:
    """``make device-check``'s first step: make or reuse the venv, install offline."""
    stamp = stamp_of(folder)
    stamp_path = venv / STAMP
    if venv_python(venv).exists() and stamp_path.exists() and json.loads(
            stamp_path.read_text()) == stamp:
        print(f"reusing {venv}")
        return 0
    if sys.version_info[:2] not in [tuple(map(int, v.split("."))) for v in PYTHONS]:
        print(f"warning: Python {sys.version.split()[0]} is outside {PYTHONS[0]}-"
              f"{PYTHONS[-1]}; the wheel folder may not hold its binary wheels")
    if not folder.is_dir():
        print(f"note: no wheel folder {folder} (make device-wheels): installing only works "
              "if every requirement is already on this machine")
    create(venv)
    try:
        pip_install(venv, folder, list(RESOLVED), deps=True)
        pip_install(venv, folder, list(NO_DEPS), deps=False)
    except subprocess.CalledProcessError:
        print(f"error: could not install {', '.join([*RESOLVED, *NO_DEPS])} offline. Fix: run "
              f"`make device-wheels` on a machine with network, copy {folder} here; if pip "
              "itself is missing, install it for this Python (python3 -m ensurepip)",
              file=sys.stderr)
        return 1
    stamp_path.write_text(json.dumps(stamp))
    print(f"venv {venv} ready; installed into it: {', '.join(own_packages(venv)) or 'nothing'}")
    return 0


def main(argv: list[str]) -> int:
    """Dispatch ``download DIR`` or ``venv DIR VENV``."""
    if len(argv) == 2 and argv[0] == "download":
        return download(Path(argv[1]))
    if len(argv) == 3 and argv[0] == "venv":
        return make_venv(Path(argv[1]), Path(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
