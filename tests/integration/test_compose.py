"""`docker compose run` of the cpu service runs one experiment without the orchestrator."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.schema import ExperimentResult

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def compose_command() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True,
                      check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither 'docker compose' nor 'docker-compose' is installed")


def test_compose_cpu_service_runs_one_experiment(cpu_image, tiny_model_dir, tmp_path):
    project = tmp_path / "project"
    (project / "studies").mkdir(parents=True)
    (project / "results").mkdir()
    (project / "hf").mkdir()
    shutil.copy(REPO / "compose.yaml", project / "compose.yaml")
    shutil.copytree(tiny_model_dir, project / ".llem" / "models" / "tiny-llama")
    (project / "studies" / "one.yaml").write_text(
        "model: ../.llem/models/tiny-llama\nbackend: pytorch\nprecision: fp32\nn: 4\n"
        "input_len: 16\noutput_len: 8\nwarmup: {n_warmup: 1, min_seconds: 0}\n")
    env = {**os.environ, "LLEM_UID": str(os.getuid()), "LLEM_GID": str(os.getgid()),
           "HF_HUB_CACHE": str(project / "hf")}
    done = subprocess.run([*compose_command(), "-f", str(project / "compose.yaml"), "run",
                           "--rm", "cpu", "run", "studies/one.yaml"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = list((project / "results").iterdir())
    assert run_dir.name.startswith("one_")
    result = ExperimentResult.model_validate_json((run_dir / "result.json").read_text())
    assert result.throughput.output_tokens == 4 * 8
    assert {"experiment.json", "events.jsonl", "timeseries.parquet"} <= {
        p.name for p in run_dir.iterdir()}
    assert (run_dir / "result.json").stat().st_uid == os.getuid()
