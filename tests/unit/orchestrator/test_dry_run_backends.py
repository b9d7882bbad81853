"""The cross-backend example study dry-runs as three independent grids with VRAM per backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import main

STUDIES = Path(__file__).resolve().parents[3] / "studies"


@pytest.fixture
def cross_backend(tiny_model_dir, tmp_path):
    # The example names a hub model; point it at the local tiny model so shapes are known.
    study = tmp_path / "cross.yaml"
    study.write_text(f"base: {STUDIES / 'cross-backend.yaml'}\nmodel: {tiny_model_dir}\n")
    return study


def test_three_independent_grids_with_per_backend_vram(cross_backend):
    result = CliRunner().invoke(main, ["run", str(cross_backend), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["grids"] == {backend: {"configurations": 2, "runs": 6}
                             for backend in ("pytorch", "vllm", "tensorrt")}
    assert plan["skipped"] == []
    by_backend: dict[str, set[float]] = {}
    for run in plan["runs"]:
        assert run["vram_gb_per_gpu"] is not None and run["vram_gb_per_gpu"] > 0
        by_backend.setdefault(run["backend"], set()).add(run["vram_gb_per_gpu"])
    # each grid sweeps its own batch knob, so each backend has two distinct estimates
    assert {backend: len(values) for backend, values in by_backend.items()} == {
        "pytorch": 2, "vllm": 2, "tensorrt": 2}
    reservations = {run["backend"]: run["reservation"] for run in plan["runs"]}
    # No GPU here: vLLM would run in its CPU build; TensorRT-LLM is GPU-only.
    assert reservations["vllm"].startswith("vLLM runs on CPU here (no GPU detected)")
    assert "KV cache 0.9" in reservations["tensorrt"]


def test_vllm_on_a_gpu_reserves_its_fraction_of_each_gpu(cross_backend):
    from harness.schema import ExperimentConfig
    from orchestrator.dryrun import reservation

    config = ExperimentConfig(model="m", backend="vllm")
    assert reservation(config, [80.0]) == (
        "vLLM reserves gpu_memory_utilization 0.9 of each GPU = 72.0 GB")


def test_the_text_dry_run_names_each_grid(cross_backend):
    result = CliRunner().invoke(main, ["run", str(cross_backend), "--dry-run"])
    assert result.exit_code == 0, result.output
    for backend in ("pytorch", "vllm", "tensorrt"):
        assert f"grid {backend}: 2 configurations, 6 runs" in result.output


@pytest.mark.parametrize("name", ["vllm-single.yaml", "tensorrt-single.yaml", "cross-backend.yaml",
                                  "demo.yaml", "single-pytorch.yaml"])
def test_every_example_study_validates(name):
    result = CliRunner().invoke(main, ["run", str(STUDIES / name), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
