"""A run whose harness was killed outright still leaves a readable timeseries.parquet."""

from __future__ import annotations

import math

from harness.energy.device import GpuSample
from harness.testing import FakeClock
from harness.timeseries import TimeSeriesWriter, is_partial, read_timeseries
from orchestrator.execute import StudyExecution
from orchestrator.manifest import Manifest
from orchestrator.runners.base import Runner, RunOutcome
from orchestrator.schedule import plan
from orchestrator.study import load_study
from orchestrator.study_dir import new_manifest


def sample(t_s, power_w):
    return GpuSample(gpu_index=0, t_s=t_s, power_w=power_w, energy_counter_j=None)


class KilledHarness(Runner):
    """Plays a harness that streamed two phases of samples and was then SIGKILLed."""

    name = "killed"

    def run(self, run_dir, timeout_s, on_event, gpus=None):
        writer = TimeSeriesWriter(run_dir / "timeseries.parquet", flush_interval_s=math.inf,
                                  clock=FakeClock())
        writer.mark_phase("baseline", 0.0)
        writer.add("baseline", [sample(0.1, 60.0)])
        writer.mark_phase("measure", 1.0)
        writer.add("measure", [sample(1.1, 300.0)])  # buffered, never flushed: lost
        writer._file.close()  # SIGKILL: the kernel closes the file, nothing else runs
        return RunOutcome(end="killed", exit_code=-9, message="killed by SIGKILL")


def test_the_stream_of_a_killed_run_becomes_a_partial_timeseries(tmp_path):
    study_file = tmp_path / "s.yaml"
    study_file.write_text("model: m\nbackend: pytorch\n"
                          "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n")
    study = load_study(study_file)
    runner = KilledHarness()
    execution = StudyExecution(study, tmp_path / "out", runner)
    (tmp_path / "out").mkdir()
    runs = plan(study)
    execution.execute(runs, new_manifest(study, runs, runner.name))

    (run,) = Manifest.load(tmp_path / "out").runs
    assert run.status == "failed" and run.failure is not None
    run_dir = tmp_path / "out" / run.run_id
    assert (run_dir / "timeseries.parquet").exists()
    assert not (run_dir / "timeseries.arrows.partial").exists()
    table = read_timeseries(run_dir / "timeseries.parquet")
    assert is_partial(table)
    assert [(r["phase"], r["power_w"]) for r in table.to_pylist()] == [
        ("baseline", None), ("baseline", 60.0), ("measure", None)]
