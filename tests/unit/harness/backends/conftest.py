"""Fixtures of the TensorRT-LLM backend's tests: the fake ``tensorrt_llm`` and its layouts."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from harness.backends import openai_server
from harness.testing import FakeGpu, visible_fake_gpus

ROOT = Path(__file__).resolve().parents[4]
FAKES = ROOT / "tests" / "fakes"


def _load(name: str) -> ModuleType:
    """A module of tests/fakes, loaded from its file (tests/fakes need not be on the path)."""
    spec = importlib.util.spec_from_file_location(name, FAKES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LAYOUTS = _load("tensorrt_llm_layouts")


def forget_tensorrt_llm() -> None:
    """Drop every imported ``tensorrt_llm`` module, so the next import starts afresh."""
    for name in [m for m in sys.modules if m == "tensorrt_llm" or m.startswith("tensorrt_llm.")]:
        del sys.modules[name]


def _put_first(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``directory`` first on ``sys.path`` here and on ``PYTHONPATH`` (with the repository, for
    ``harness.testing``) in the processes tests start, such as the fake ``trtllm-serve``."""
    monkeypatch.syspath_prepend(str(directory))
    path = os.pathsep.join(filter(None, [str(directory), str(ROOT),
                                         os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)


@pytest.fixture(scope="session")
def documented() -> ModuleType:
    """TensorRT-LLM's documented signatures (tests/fakes/tensorrt_llm_documented.py)."""
    return _load("tensorrt_llm_documented")


@pytest.fixture
def forget() -> Callable[[], None]:
    """:func:`forget_tensorrt_llm`, for tests that import another ``tensorrt_llm`` themselves."""
    return forget_tensorrt_llm


@pytest.fixture
def trtllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The fake tensorrt_llm (1.0.0 layout), freshly imported (its counters start at zero),
    here and in the processes the test starts."""
    forget_tensorrt_llm()
    _put_first(FAKES, monkeypatch)
    yield importlib.import_module("tensorrt_llm")
    forget_tensorrt_llm()


@pytest.fixture
def trtllm_layout(tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    """Install the fake laid out as a release (``tensorrt_llm_layouts.install``) under
    ``tmp_path``, put it first on the paths as :func:`trtllm` does, and import it."""

    def install(version: str) -> ModuleType:
        forget_tensorrt_llm()
        _put_first(LAYOUTS.install(tmp_path / f"tensorrt_llm-{version}", version), monkeypatch)
        return importlib.import_module("tensorrt_llm")

    yield install
    forget_tensorrt_llm()


@pytest.fixture
def layouts() -> ModuleType:
    """tests/fakes/tensorrt_llm_layouts.py."""
    return LAYOUTS


@pytest.fixture(params=list(LAYOUTS.LAYOUTS))
def layout_version(request: pytest.FixtureRequest) -> str:
    """Each release layout the fake models (``LAYOUTS``), one test per layout."""
    return str(request.param)


@pytest.fixture
def server_on_fake_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's process on the fake GPUs, as NVML would list a real server's.

    The fake GPUs live in this process; the fake engine in the server process cannot occupy
    them, so the server's pid is put on the visible ones while it runs (with the share of
    memory the engine's KV cache reserves by default), and taken off when it stops.
    """
    real_start = openai_server.LoopbackServer.start
    real_stop = openai_server.LoopbackServer.stop
    held: dict[int, list[FakeGpu]] = {}

    def start(self: openai_server.LoopbackServer, timeout_s: float | None = None) -> None:
        real_start(self, timeout_s)
        assert self.pid is not None
        held[id(self)] = visible_fake_gpus()
        for gpu in held[id(self)]:
            gpu.occupy(self.pid, 0.9 * gpu.info().memory_total_mb)

    def stop(self: openai_server.LoopbackServer, grace_s: float = 30.0) -> None:
        pid = self.pid
        for gpu in held.pop(id(self), []):
            if pid is not None:
                gpu.release(pid)
        real_stop(self, grace_s)

    monkeypatch.setattr(openai_server.LoopbackServer, "start", start)
    monkeypatch.setattr(openai_server.LoopbackServer, "stop", stop)
