"""Which image serves a backend, and what preflight says when one is missing (catalog-driven).

The engine is a stand-in that answers the three questions the runner asks (ping, runtimes,
image present); the integration tests drive the real Docker engine.
"""

from __future__ import annotations

from typing import Any

from orchestrator.runners.docker.runner import DockerRunner


class EngineAnswers:
    """Answers ping, info and has_image as a Docker engine with these runtimes and images."""

    def __init__(self, gpu_runtime: bool, images: set[str]) -> None:
        self._runtimes = {"runc": {}, **({"nvidia": {}} if gpu_runtime else {})}
        self._images = images

    def ping(self) -> str:
        return "27.0"

    def info(self) -> dict[str, Any]:
        return {"Runtimes": self._runtimes}

    def has_image(self, ref: str) -> bool:
        return ref in self._images


def runner(gpu_runtime: bool, built: set[str] | None = None, **kwargs: Any) -> DockerRunner:
    return DockerRunner(engine=EngineAnswers(gpu_runtime, built or set()),  # type: ignore[arg-type]
                        **kwargs)


def test_pytorch_runs_in_the_cpu_image_on_a_machine_without_gpus() -> None:
    assert runner(gpu_runtime=False).image_for("pytorch") == "llem/cpu:latest"
    assert runner(gpu_runtime=True).image_for("pytorch") == "llem/pytorch:latest"


def test_gpu_only_backends_always_get_their_own_image() -> None:
    assert runner(gpu_runtime=False).image_for("tensorrt") == "llem/tensorrt:latest"
    assert runner(gpu_runtime=True).image_for("tensorrt") == "llem/tensorrt:latest"


def test_vllm_runs_in_its_cpu_build_where_the_engine_has_no_gpus() -> None:
    assert runner(gpu_runtime=False).image_for("vllm") == "llem/vllm-cpu:latest"
    assert runner(gpu_runtime=True).image_for("vllm") == "llem/vllm:latest"


def test_an_image_the_user_names_is_used_as_is() -> None:
    chosen = runner(gpu_runtime=False, images={"pytorch": "mine/pytorch:1"})
    assert chosen.image_for("pytorch") == "mine/pytorch:1"


def test_a_missing_cpu_image_names_the_cpu_build() -> None:
    problems = runner(gpu_runtime=False).preflight({"pytorch"})
    assert problems == ["image llem/cpu:latest for backend pytorch is not built\n"
                        "  fix: llem images build cpu"]


def test_gpu_only_backends_without_the_nvidia_runtime_are_refused() -> None:
    problems = runner(gpu_runtime=False, built={"llem/vllm-cpu:latest"}).preflight(
        {"vllm", "tensorrt"})
    assert problems[0].startswith("backend tensorrt needs NVIDIA GPUs")
    assert problems[1:] == ["image llem/tensorrt:latest for backend tensorrt is not built\n"
                            "  fix: llem images build tensorrt"]
