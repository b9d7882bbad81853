"""`docker compose run` of the cpu service runs one experiment without the orchestrator."""

from __future__ import annotations

import os

import pytest
from llem_testkit.compose import compose_run

from harness.schema import ExperimentResult

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_compose_cpu_service_runs_one_experiment(cpu_image, tiny_model_dir, tmp_path):
    project = tmp_path / "project"
    done = compose_run(
        project, tiny_model_dir, "tiny-llama",
        "model: ../.llem/models/tiny-llama\nbackend: pytorch\nprecision: fp32\nn: 4\n"
        "input_len: 16\noutput_len: 8\nwarmup: {n_warmup: 1, min_seconds: 0}\n", "cpu")
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = list((project / "results").iterdir())
    assert run_dir.name.startswith("one_")
    result = ExperimentResult.model_validate_json((run_dir / "result.json").read_text())
    assert result.throughput.output_tokens == 4 * 8
    assert {"experiment.json", "events.jsonl", "timeseries.parquet"} <= {
        p.name for p in run_dir.iterdir()}
    assert (run_dir / "result.json").stat().st_uid == os.getuid()
