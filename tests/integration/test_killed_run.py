"""A harness killed outright (SIGKILL) in its measurement window keeps what it had sampled.

The harness runs the real tiny model on the CPU in a subprocess; once its window has started the
test sends it SIGKILL, as the OOM killer or a removed container would: no handler, no ``finally``
runs. What the time-series writer had flushed must read back, and recovery must turn it into a
``timeseries.parquet`` marked partial.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from harness.io import read_events, write_json
from harness.schema import ExperimentConfig
from harness.schema.run_spec import RunSpec
from harness.timeseries import is_partial, read_timeseries, recover_timeseries

REPO = Path(__file__).resolve().parents[2]
EARLIER_PHASES = ["preflight", "baseline", "load", "warmup"]

# The harness as the container runs it, but with a FakeGpu replaying 150 W, so the sampler
# thread writes GPU rows on this GPU-less machine.
REPLAY_SCRIPT = """
import sys
from pathlib import Path
from harness.energy import GpuSet
from harness.protocol import ExperimentRun
from harness.schema.run_spec import RunSpec
from harness.testing import FakeGpu
run_dir = Path(sys.argv[1])
spec = RunSpec.model_validate_json((run_dir / "experiment.json").read_text())
gpus = GpuSet([FakeGpu([(0.0, 150.0), (1e6, 150.0)], index=0)], driver_version="999.1",
              cuda_version="12.9")
ExperimentRun(spec, run_dir, gpus=gpus, device="cpu").execute()
"""


def long_config(model_dir: Path) -> ExperimentConfig:
    """A window far longer than the test waits: it is always killed inside it."""
    return ExperimentConfig(
        model=str(model_dir), backend="pytorch", precision="fp32", n=5000, input_len=16,
        output_len=32, warmup={"n_warmup": 1, "min_seconds": 0},
        baseline={"duration_s": 0.5}, energy={"sample_interval_ms": 20},
        pytorch={"batch_size": 1})


def start(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(condition, process: subprocess.Popen[bytes], what: str, limit_s: float = 300):
    """Poll ``condition`` until it is true; fail if the harness ends or ``limit_s`` passes."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if condition():
            return
        assert process.poll() is None, f"the harness ended (rc {process.returncode}) before {what}"
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"no {what} within {limit_s} s")


def progress_after_measure(events_path: Path) -> bool:
    """The window began and its first batch finished: the measure marker is on disk."""
    names = [(e["event"], e.get("phase")) for e in read_events(events_path)]
    if ("phase", "measure") not in names:
        return False
    return any(name == "progress" for name, _ in names[names.index(("phase", "measure")):])


def kill(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL


def phases_in_order(rows: list[dict]) -> list[str]:
    return [r["phase"] for r in rows if r["gpu_index"] is None]


@pytest.mark.slow
def test_harness_killed_in_its_window_leaves_every_phase_marker(tiny_model_dir, tmp_path):
    experiment = tmp_path / "experiment.yaml"
    config = long_config(tiny_model_dir).model_dump(mode="json", exclude_defaults=True)
    experiment.write_text(json.dumps(config))  # JSON is YAML
    process = start(["-m", "harness", "run", str(experiment), "--output", "out"], tmp_path)
    events = lambda: next(iter((tmp_path / "out").glob("*/events.jsonl")), None)  # noqa: E731
    wait_for(lambda: events() is not None and progress_after_measure(events()), process,
             "progress in the measurement window")
    kill(process)
    run_dir = events().parent
    assert "done" not in [e["event"] for e in read_events(run_dir / "events.jsonl")]
    path = run_dir / "timeseries.parquet"
    assert not path.exists() and (run_dir / "timeseries.arrows.partial").exists()
    assert phases_in_order(read_timeseries(path).to_pylist()) == [*EARLIER_PHASES, "measure"]
    assert recover_timeseries(path)
    assert pq.read_table(path).schema.metadata[b"partial"] == b"true"
    assert phases_in_order(read_timeseries(path).to_pylist()) == [*EARLIER_PHASES, "measure"]


@pytest.mark.slow
def test_samples_flushed_before_a_kill_in_the_window_survive_it(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    write_json(run_dir / "experiment.json", RunSpec(run_id="r1", config=long_config(
        tiny_model_dir)))
    process = start(["-c", REPLAY_SCRIPT, str(run_dir)], tmp_path)
    path = run_dir / "timeseries.parquet"

    def window_samples() -> list[dict]:
        rows = read_timeseries(path).to_pylist() if path.with_name(
            "timeseries.arrows.partial").exists() else []
        return [r for r in rows if r["phase"] == "measure" and r["gpu_index"] is not None]

    wait_for(lambda: len(window_samples()) > 0, process, "a sample of the window on disk")
    seen = window_samples()
    kill(process)
    assert not (run_dir / "result.json").exists()
    assert recover_timeseries(path)
    table = read_timeseries(path)
    assert is_partial(table)
    rows = table.to_pylist()
    assert phases_in_order(rows) == [*EARLIER_PHASES, "measure"]
    baseline = [r for r in rows if r["phase"] == "baseline" and r["gpu_index"] == 0]
    assert baseline and all(r["power_w"] == pytest.approx(150.0) for r in baseline)
    window = [r for r in rows if r["phase"] == "measure" and r["gpu_index"] is not None]
    assert window[:len(seen)] == seen  # nothing that was on disk before the kill is lost
