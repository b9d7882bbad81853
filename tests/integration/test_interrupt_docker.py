"""Ctrl-C through the Docker runner, then --resume: nothing lost, nothing left running."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.manifest import Manifest
from orchestrator.runners.docker.sessions import LABEL_SESSION

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LLEM = str(Path(sys.executable).with_name("llem"))


def test_sigint_after_two_runs_then_resume_runs_exactly_the_rest(
        cpu_image, tiny_model_dir, tmp_path, engine, no_leftover_containers):
    fast = {"warmup": {"n_warmup": 0, "min_seconds": 0}}
    slow = {"warmup": {"n_warmup": 1, "min_seconds": 25, "max_seconds": 60}}
    entries = [{**(slow if i == 3 else fast), "pytorch": {"batch_size": i}} for i in range(1, 7)]
    study = tmp_path / "s.yaml"
    study.write_text(
        f"name: i\nmodel: {tiny_model_dir}\nbackend: pytorch\nprecision: fp32\nn: 3\n"
        "input_len: 8\noutput_len: 4\nexecution: {config_gap_s: 0}\nexperiments:\n"
        + "".join(f"  - {json.dumps(e)}\n" for e in entries))
    process = subprocess.Popen([LLEM, "run", str(study), "--runner", "docker", "--output", "o",
                                "-q"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    study_dir = None
    while time.monotonic() < deadline:
        dirs = list((tmp_path / "o").glob("i_*"))
        events = list((tmp_path / "o").glob("i_*/003_*/events.jsonl"))
        if dirs and events and '"warmup"' in events[0].read_text():
            study_dir = dirs[0]
            break
        time.sleep(0.3)
    assert study_dir is not None, "the third run never reached its warmup"
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=300)  # grace period 10 s plus removal; the limit finds a hang
    assert process.returncode == 130
    assert engine.containers(LABEL_SESSION) == []
    assert subprocess.run(["pgrep", "-f", str(study_dir)], capture_output=True,
                          check=False).stdout == b""
    runs = Manifest.load(study_dir).runs
    assert [r.status for r in runs] == ["completed", "completed", "interrupted", "pending",
                                        "pending", "pending"]
    kept = {r.run_id: (study_dir / r.run_id / "result.json").read_bytes() for r in runs[:2]}
    resumed = subprocess.run([LLEM, "run", "--resume", str(study_dir), "--runner", "docker",
                              "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                             check=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "4 of 6 runs to do" in resumed.stderr
    after = Manifest.load(study_dir).runs
    assert [r.status for r in after] == ["completed"] * 6
    assert [r.started_at for r in after[:2]] == [r.started_at for r in runs[:2]]
    for run_id, content in kept.items():
        assert (study_dir / run_id / "result.json").read_bytes() == content
