"""Ctrl-C through the Docker runner, then --resume: nothing lost, nothing left running."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from llem_testkit.cli import llem, start_llem, wait_for_event

from orchestrator.manifest import Manifest
from orchestrator.runners.docker.labels import LABEL_SESSION, LABEL_STUDY

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_sigint_after_two_runs_then_resume_runs_exactly_the_rest(
        cpu_image, tiny_model_dir, tmp_path, engine):
    fast = {"warmup": {"n_warmup": 0, "min_seconds": 0}}
    slow = {"warmup": {"n_warmup": 1, "min_seconds": 12, "max_seconds": 60}}  # time to Ctrl-C
    entries = [{**(slow if i == 3 else fast), "pytorch": {"batch_size": i}} for i in range(1, 5)]
    study = tmp_path / "s.yaml"
    study.write_text(
        f"name: i\nmodel: {tiny_model_dir}\nbackend: pytorch\nprecision: fp32\nn: 3\n"
        "input_len: 8\noutput_len: 4\nexecution: {config_gap_s: 0}\nexperiments:\n"
        + "".join(f"  - {json.dumps(e)}\n" for e in entries))
    process = start_llem("run", str(study), "--runner", "docker", "--output", "o", "-q",
                         cwd=tmp_path)
    events = wait_for_event(tmp_path / "o", "i_*/003_*/events.jsonl", "warmup", timeout_s=300)
    assert events is not None, "the third run never reached its warmup"
    study_dir = events.parent.parent
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=300)  # grace period 10 s plus removal; the limit finds a hang
    assert process.returncode == 130
    # Other studies may share the engine: only this one's containers are checked (and removed).
    assert [c for c in engine.containers(LABEL_SESSION) if c.labels.get(LABEL_STUDY) == "i"] == []
    assert subprocess.run(["pgrep", "-f", str(study_dir)], capture_output=True,
                          check=False).stdout == b""
    runs = Manifest.load(study_dir).runs
    assert [r.status for r in runs] == ["completed", "completed", "interrupted", "pending"]
    kept = {r.run_id: (study_dir / r.run_id / "result.json").read_bytes() for r in runs[:2]}
    resumed = llem("run", "--resume", str(study_dir), "--runner", "docker", "-q", cwd=tmp_path,
                   timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "2 of 4 runs to do" in resumed.stderr
    after = Manifest.load(study_dir).runs
    assert [r.status for r in after] == ["completed"] * 4
    assert [r.started_at for r in after[:2]] == [r.started_at for r in runs[:2]]
    for run_id, content in kept.items():
        assert (study_dir / run_id / "result.json").read_bytes() == content
