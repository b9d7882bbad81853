"""The import rules, read from the source: every import statement of harness/ and orchestrator/.

- a backend package (harness/backends/<name>/) never imports a sibling backend;
- the host (orchestrator/) never imports a backend package (only the catalog and the registry);
- harness/ never imports orchestrator/;
- the Docker SDK is imported under orchestrator/runners/docker/ only.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BACKEND_PACKAGES = sorted(path.parent.name
                          for path in (ROOT / "harness" / "backends").glob("*/__init__.py"))


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported_names(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted module) of every import statement and literal ``import_module`` call."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            yield node.lineno, base
            for alias in node.names:  # "from harness.backends import vllm" names a module
                yield node.lineno, f"{base}.{alias.name}"
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            yield node.lineno, node.args[0].value


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(package: str, forbidden: Callable[[Path, str], bool]) -> list[str]:
    found = []
    for path in modules(package):
        for line, name in imported_names(path):
            if forbidden(path, name):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return found


def test_the_backend_packages_are_found() -> None:
    assert {"pytorch", "vllm", "tensorrt"} <= set(BACKEND_PACKAGES)


def backend_of(path: Path) -> str | None:
    parts = path.relative_to(ROOT).parts
    return parts[2] if len(parts) > 3 and parts[:2] == ("harness", "backends") else None


def test_no_backend_imports_a_sibling_backend() -> None:
    def sibling(path: Path, name: str) -> bool:
        own = backend_of(path)
        return own is not None and any(
            under(name, f"harness.backends.{other}") for other in BACKEND_PACKAGES if other != own)

    assert violations("harness", sibling) == []


def test_shared_backend_modules_import_no_backend() -> None:
    def backend_import(path: Path, name: str) -> bool:
        shared = path.parent == ROOT / "harness" / "backends" or backend_of(path) is None
        return shared and any(under(name, f"harness.backends.{b}") for b in BACKEND_PACKAGES)

    assert violations("harness", backend_import) == []


def test_the_host_never_imports_a_backend_package() -> None:
    def backend_import(path: Path, name: str) -> bool:
        return any(under(name, f"harness.backends.{b}") for b in BACKEND_PACKAGES)

    assert violations("orchestrator", backend_import) == []


def test_harness_never_imports_orchestrator() -> None:
    assert violations("harness", lambda path, name: under(name, "orchestrator")) == []


def test_the_docker_sdk_stays_in_the_docker_runner() -> None:
    docker_dir = ROOT / "orchestrator" / "runners" / "docker"

    def docker_import(path: Path, name: str) -> bool:
        return under(name, "docker") and docker_dir not in path.parents

    assert violations("harness", docker_import) + violations("orchestrator", docker_import) == []


@pytest.mark.parametrize("source, expected", [
    ("from harness.backends.pytorch.loading import x", "harness.backends.pytorch.loading"),
    ("from harness.backends import vllm", "harness.backends.vllm"),
    ("import orchestrator.cli", "orchestrator.cli"),
    ("importlib.import_module('harness.backends.tensorrt')", "harness.backends.tensorrt"),
    ("from ..pytorch import loading", "harness.backends.pytorch"),
])
def test_the_walker_sees_every_form_of_import(tmp_path: Path, source: str, expected: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # a module placed as harness/backends/vllm/probe.py would be
    module = ROOT / "harness" / "backends" / "vllm" / "probe_for_test.py"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: source)
    assert expected in [name for _, name in imported_names(module)]
