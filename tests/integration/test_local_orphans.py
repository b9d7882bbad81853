"""A SIGKILLed orchestrator leaves no local harness running, and `llem clean` tidies up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from orchestrator.runners.session import process_alive

pytestmark = [pytest.mark.slow]

LLEM = str(Path(sys.executable).with_name("llem"))
LIMIT_S = 120.0  # generous: the kernel acts at once, a loaded machine may take a while to show


def wait_for(condition, limit_s: float = LIMIT_S) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def warming(output: Path) -> bool:
    events = list(output.glob("*/001_*/events.jsonl"))
    return bool(events) and '"warmup"' in events[0].read_text()


def test_sigkilled_orchestrator_takes_its_local_harness_with_it(tiny_model_dir, tmp_path):
    name = f"orphan-{uuid.uuid4().hex[:8]}"
    study = tmp_path / "s.yaml"
    study.write_text(
        f"name: {name}\nmodel: {tiny_model_dir}\nbackend: pytorch\nprecision: fp32\nn: 4\n"
        "input_len: 16\noutput_len: 8\nexecution: {config_gap_s: 0}\n"
        "warmup: {n_warmup: 1, min_seconds: 300, max_seconds: 600}\n")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    registry = tmp_path / "state" / "llem" / "local-runs"
    process = subprocess.Popen([LLEM, "run", str(study), "--runner", "local", "--output", "o",
                                "-q"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: warming(tmp_path / "o"), 300), "the run never reached warmup"
        (entry_path,) = registry.glob("*.json")
        entry = json.loads(entry_path.read_text())
        assert process_alive(entry["pid"], entry["pid_start"])
    finally:
        process.send_signal(signal.SIGKILL)  # no handler, no finally: only the kernel acts
        process.wait(timeout=30)
    assert wait_for(lambda: not process_alive(entry["pid"], entry["pid_start"])), \
        "the harness outlived its orchestrator"
    # The registry entry is all that is left; `llem clean` finds the session dead and forgets it.
    cleaned = subprocess.run([LLEM, "clean", "--study", name], env=env, capture_output=True,
                             text=True, timeout=120, check=False)
    assert cleaned.returncode == 0, cleaned.stderr
    assert "stopped 0 orphaned local run(s)" in cleaned.stdout
    assert list(registry.iterdir()) == []
