"""A harness killed outright (SIGKILL) in its measurement window keeps what it had sampled.

The harness runs the real tiny model on the CPU in a subprocess; once its window has started the
test sends it SIGKILL, as the OOM killer or a removed container would: no handler, no ``finally``
runs. What the time-series writer had flushed must read back, and recovery must turn it into a
``timeseries.parquet`` marked partial; in a study (local runner) the orchestrator does that
itself once it has classified the run ``killed``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
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


def children(parent: int) -> list[int]:
    return [int(pid) for task in Path(f"/proc/{parent}/task").iterdir()
            for pid in (task / "children").read_text().split()]


@contextlib.contextmanager
def stopped_at_the_end(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """Whatever the test does, leave neither ``process`` nor its children running."""
    try:
        yield
    finally:
        if process.poll() is None:
            for pid in children(process.pid):
                os.kill(pid, signal.SIGKILL)
            process.kill()
            process.wait()


def wait_for(condition, process: subprocess.Popen[bytes], what: str, limit_s: float = 300):
    """Poll ``condition`` until it is true; fail if ``process`` ends or ``limit_s`` passes."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if condition():
            return
        assert process.poll() is None, f"the process ended (rc {process.returncode}) before {what}"
        time.sleep(0.05)
    pytest.fail(f"no {what} within {limit_s} s")


def progress_after_measure(events_path: Path) -> bool:
    """The window began and its first batch finished: the measure marker is on disk."""
    names = [(e.event, getattr(e, "phase", None)) for e in read_events(events_path)]
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
    with stopped_at_the_end(process):
        wait_for(lambda: events() is not None and progress_after_measure(events()), process,
                 "progress in the measurement window")
        kill(process)
    run_dir = events().parent
    assert "done" not in [e.event for e in read_events(run_dir / "events.jsonl")]
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

    with stopped_at_the_end(process):
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


def harness_child(parent: int, run_dir: Path) -> int:
    """The pid of the harness the local runner started for ``run_dir`` (a direct child)."""
    argument = f"{run_dir.name}/experiment.json".encode()
    (pid,) = [pid for pid in children(parent)
              if argument in Path(f"/proc/{pid}/cmdline").read_bytes()]
    return pid


@pytest.mark.slow
def test_a_study_whose_harness_is_killed_records_it_and_keeps_a_partial_series(
        tiny_model_dir, tmp_path):
    config = long_config(tiny_model_dir).model_dump(mode="json", exclude_defaults=True)
    study = tmp_path / "s.yaml"
    study.write_text(json.dumps({"name": "k", **config,
                                 "execution": {"config_gap_s": 0, "cycle_gap_s": 0}}))
    llem = subprocess.Popen([str(Path(sys.executable).with_name("llem")), "run", str(study),
                             "--runner", "local", "--output", "out", "-q"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events = lambda: next(iter((tmp_path / "out").glob("*/001_*/events.jsonl")), None)  # noqa: E731
    with stopped_at_the_end(llem):
        wait_for(lambda: events() is not None and progress_after_measure(events()), llem,
                 "progress in the measurement window")
        run_dir = events().parent
        os.kill(harness_child(llem.pid, run_dir), signal.SIGKILL)
        assert llem.wait(timeout=120) == 1  # a failed run: the study itself ran to its end
    manifest = json.loads((run_dir.parent / "manifest.json").read_text())
    (run,) = manifest["runs"]
    assert run["status"] == "failed" and run["failure"]["cause"] == "killed"
    assert not (run_dir / "timeseries.arrows.partial").exists()
    table = read_timeseries(run_dir / "timeseries.parquet")
    assert is_partial(table)
    assert phases_in_order(table.to_pylist()) == [*EARLIER_PHASES, "measure"]
