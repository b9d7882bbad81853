"""Before any run starts: models available offline, GPU-only backends on a GPU machine."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from harness.energy import discover_gpus
from orchestrator.cli import main


def test_a_missing_model_is_bad_input_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = tmp_path / "s.yaml"
    study.write_text("model: ./no-such-model\nbackend: pytorch\nn: 2\n")
    done = CliRunner().invoke(main, ["run", str(study), "--runner", "local", "--output", "o"])
    assert done.exit_code == 2
    assert "model directory" in done.output and "no-such-model" in done.output
    assert "fix:" in done.output
    assert not (tmp_path / "o").exists()


def test_gpu_only_backends_need_a_gpu_with_the_local_runner(tiny_model_dir, tmp_path, monkeypatch):
    gpus = discover_gpus()
    if len(gpus):
        gpus.close()
        pytest.skip("this machine has an NVIDIA GPU")
    monkeypatch.chdir(tmp_path)
    study = tmp_path / "s.yaml"
    study.write_text(f"model: {tiny_model_dir}\nbackend: [pytorch, tensorrt]\nn: 2\n")
    done = CliRunner().invoke(main, ["run", str(study), "--runner", "local", "--output", "o"])
    # No NVIDIA GPU here: TensorRT-LLM cannot run, and that is said before anything starts.
    assert done.exit_code == 2
    assert "backend tensorrt needs NVIDIA GPUs, but NVML finds none here" in done.output
    assert not (tmp_path / "o").exists()
