"""Run events as a user sees them (`llem run -v`) and stall detection, with the local runner
and the tiny model, driving the CLI as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.manifest import Manifest

LLEM = str(Path(sys.executable).with_name("llem"))

PHASES = ("preflight", "baseline", "load", "warmup", "measure", "write")


def study_text(model: Path, body: str, **top: object) -> str:
    head = {
        "name": "t", "model": str(model), "backend": "pytorch", "precision": "fp32",
        "n": 4, "input_len": 16, "output_len": 8,
        "warmup": {"n_warmup": 1, "min_seconds": 0}, **top,
    }
    return "\n".join(f"{key}: {json.dumps(value)}" for key, value in head.items()) + "\n" + body


def llem(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LLEM, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


def only_study_dir(output: Path) -> Path:
    (study_dir,) = [p for p in output.iterdir() if p.is_dir()]
    return study_dir


@pytest.mark.slow
def test_verbose_run_prints_every_phase_and_the_progress_of_each_run(tiny_model_dir, tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text(study_text(
        tiny_model_dir, "sweep:\n  pytorch.batch_size: [1, 2]\n",
        execution={"config_gap_s": 0, "cycle_gap_s": 0}))
    done = llem("run", str(study), "--runner", "local", "--output", "out", "-v", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    runs = Manifest.load(only_study_dir(tmp_path / "out")).runs
    assert len(runs) == 2
    for run in runs:
        shown = [line.removeprefix(f"{run.run_id}: ") for line in lines
                 if line.startswith(f"{run.run_id}: ")]
        assert [s.removeprefix("phase ") for s in shown if s.startswith("phase ")][:6] == \
            list(PHASES), shown
        assert "warning no_energy_sensor" in "\n".join(shown)
        requests = [s for s in shown if s.endswith(" requests")]
        assert requests and requests[-1] == "4/4 requests", shown
        assert shown[-1] == "completed"


def harness_pid(run_dir: Path) -> int | None:
    # The runner passes the run directory as the study was given (here relative to cwd).
    pattern = f"harness run .*{run_dir.parent.name}/{run_dir.name}/experiment.json"
    found = subprocess.run(["pgrep", "-f", pattern],
                           capture_output=True, text=True, check=False).stdout.split()
    pids = [int(pid) for pid in found if int(pid) != os.getpid()]
    return pids[0] if pids else None


@pytest.mark.slow
def test_a_frozen_harness_is_stopped_and_recorded_as_stalled(tiny_model_dir, tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text(study_text(
        tiny_model_dir, "sweep:\n  pytorch.batch_size: [1]\n",
        warmup={"n_warmup": 1, "min_seconds": 300, "max_seconds": 600},
        execution={"stall_timeout_s": 10, "timeout_s": 600}))
    process = subprocess.Popen([LLEM, "run", str(study), "--runner", "local", "--output",
                                "out", "-q"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    frozen = None
    try:
        # a bound on the wait, not a timing: a loaded 2-core host (image builds beside the
        # tests) has taken more than 120 s to load the tiny model and reach warmup
        deadline = time.monotonic() + 300
        while frozen is None and time.monotonic() < deadline:
            events = list((tmp_path / "out").glob("*/001_*/events.jsonl"))
            if events and '"warmup"' in events[0].read_text():
                frozen = harness_pid(events[0].parent)
            time.sleep(0.3)
        assert frozen is not None, "the run never reached warmup"
        # Frozen, not dead: the process lives, its heartbeats stop.
        os.kill(frozen, signal.SIGSTOP)
        process.communicate(timeout=120)
    finally:
        process.kill()
        if frozen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(frozen, signal.SIGKILL)
    assert process.returncode == 1
    (run,) = Manifest.load(only_study_dir(tmp_path / "out")).runs
    assert run.status == "failed" and run.failure is not None
    assert run.failure.cause == "stalled"
    assert "stall_timeout_s (10 s)" in run.failure.message
    assert "during phase warmup" in run.failure.message
    assert any("run directory" in line for line in run.failure.log_tail)
