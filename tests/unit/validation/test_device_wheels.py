"""`make device-wheels`' package list covers what `make device-check` imports on a GPU machine.

The GPU machine is simulated in a fresh interpreter that refuses to import any distribution the
machine would not have: neither required by PyTorch, transformers, nvidia-ml-py, pyarrow and
scipy, nor installed from the wheel folder.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[3]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "gpu" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wheels = load("device_wheels")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(requirements, stop=frozenset()) -> set[str]:
    """Distributions that installing ``requirements`` brings, from the installed metadata
    (never entering the distributions named in ``stop``)."""
    seen: set[str] = set()
    todo = [Requirement(r).name for r in requirements]
    while todo:
        name = canonical(todo.pop())
        if name in seen or name in stop:
            continue
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def shipped() -> set[str]:
    return closure([*wheels.RESOLVED, *wheels.DOWNLOAD_ONLY]) | {
        canonical(Requirement(r).name) for r in wheels.NO_DEPS}


def roots() -> set[str]:
    return {canonical(Requirement(r).name) for r in (*wheels.RESOLVED, *wheels.NO_DEPS)}


def machine() -> set[str]:
    # What the shipped packages are may also come with a machine's own packages in some
    # versions (transformers -> typer -> pydantic here); the GPU machine is not assumed to.
    return closure(wheels.MACHINE_HAS, stop=roots())


GPU_MACHINE = '''
import importlib.abc, importlib.metadata, json, re, sys
allowed = set(json.loads(sys.argv[1]))
owners = importlib.metadata.packages_distributions()
def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()
class NotOnTheMachine(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        dists = owners.get(name.partition(".")[0])
        if dists and not any(canonical(d) in allowed for d in dists):
            raise ModuleNotFoundError(f"No module named {name!r} (not on the GPU machine)")
        return None
sys.meta_path.insert(0, NotOnTheMachine())
sys.path.insert(0, "tests/gpu")
import harness.protocol, harness.backends.pytorch, harness.tiny_model, harness.testing
import harness.energy.zeus, zeus.device, device_check, device_platforms
from zeus.device import get_gpus
print("imported")
'''


def test_the_check_imports_on_a_machine_with_only_its_packages_and_the_wheels():
    pytest.importorskip("zeus")
    pytest.importorskip("torch")
    allowed = sorted(machine() | shipped())
    done = subprocess.run([sys.executable, "-c", GPU_MACHINE, json.dumps(allowed)], cwd=REPO,
                          capture_output=True, text=True, timeout=240, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("imported")


def test_the_simulated_machine_refuses_what_the_wheels_would_bring():
    pytest.importorskip("torch")
    allowed = sorted(machine())  # no wheels: pydantic is missing, as on the GPU machine
    done = subprocess.run([sys.executable, "-c", GPU_MACHINE, json.dumps(allowed)], cwd=REPO,
                          capture_output=True, text=True, timeout=240, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0
    assert "No module named 'pydantic' (not on the GPU machine)" in done.stderr


def top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


def test_every_third_party_import_of_the_harness_is_on_the_machine_shipped_or_not_needed():
    owners = metadata.packages_distributions()
    available = machine() | shipped()
    files = [*REPO.glob("harness/**/*.py"), *REPO.glob("tests/gpu/device_*.py")]
    unaccounted = {}
    imported = set().union(*(top_level_imports(path) for path in files))
    assert set(wheels.NOT_SHIPPED) <= imported  # the exceptions are real imports
    for path in files:
        for name in top_level_imports(path):
            if name in sys.stdlib_module_names or name in {"harness", "device_platforms"}:
                continue
            dists = {canonical(d) for d in owners.get(name, [name])}
            if not dists & available and name not in wheels.NOT_SHIPPED:
                unaccounted[name] = str(path.relative_to(REPO))
    assert unaccounted == {}


def test_zeus_ships_without_its_heavy_declared_requirements():
    assert "zeus" not in {canonical(Requirement(r).name) for r in wheels.RESOLVED}
    assert not {"pandas", "scikit-learn"} & shipped()
