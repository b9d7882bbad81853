"""Run order and gaps between runs."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from llem_testkit.cli import llem, only_study_dir

from harness.energy import GpuSet
from harness.schema.events import Cooled, Gap, RunFinished
from harness.schema.run_spec import RunSpec
from harness.testing import FakeGpu
from orchestrator.dryrun import gaps_s
from orchestrator.execute import KILLED_NOW, StudyExecution, plan
from orchestrator.manifest import Manifest
from orchestrator.runners.base import Runner, RunOutcome
from orchestrator.runners.local import LocalRunner
from orchestrator.study import load_study
from orchestrator.study_dir import new_manifest
from orchestrator.summary import StudySummary


def study(tmp_path, order="interleaved", gap=0.0):
    path = tmp_path / "s.yaml"
    path.write_text(f"model: m\nbackend: pytorch\nexecution: {{n_cycles: 2, cycle_order: {order},"
                    f" config_gap_s: {gap}, cycle_gap_s: 0}}\n"
                    "sweep:\n  pytorch.batch_size: [1, 2, 3]\n")
    return load_study(path)


def test_orders(tmp_path):
    ids = lambda runs: [(r.number, r.cycle) for r in runs]  # noqa: E731
    assert ids(plan(study(tmp_path, "interleaved"))) == [(1, 1), (2, 1), (3, 1),
                                                         (1, 2), (2, 2), (3, 2)]
    assert ids(plan(study(tmp_path, "sequential"))) == [(1, 1), (1, 2), (2, 1), (2, 2),
                                                        (3, 1), (3, 2)]
    shuffled = ids(plan(study(tmp_path, "shuffled")))
    assert shuffled == ids(plan(study(tmp_path, "shuffled")))  # seeded: the same every time
    assert sorted(shuffled) == sorted(ids(plan(study(tmp_path, "sequential"))))


class InstantStop(threading.Event):
    """A runner's stop_requested whose waits return at once and are recorded (seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


def test_gap_counts_down_and_stops_on_request(tmp_path):
    loaded = study(tmp_path, gap=2.5)
    events = []
    runner = LocalRunner()
    runner.stop_requested = stop = InstantStop()
    execution = StudyExecution(loaded, tmp_path, runner, events.append)
    execution._gap(2.5)
    assert stop.waits == [1.0, 1.0, 0.5]  # the whole gap, in steps of at most 1 s
    assert events == [Gap(seconds=2.5, remaining_s=r) for r in (2.5, 1.5, 0.5)]
    runner.request_stop()
    execution._gap(2.5)
    assert stop.waits == [1.0, 1.0, 0.5] and len(events) == 3  # no wait once stopped


class SpecReader(Runner):
    """Runs nothing: keeps the experiment.json of every run and reports it failed."""

    name = "spec-reader"

    def __init__(self) -> None:
        super().__init__()
        self.specs: list[RunSpec] = []

    def run(self, run_dir, timeout_s, on_event, gpus=None):
        text = (run_dir / "experiment.json").read_text(encoding="utf-8")
        self.specs.append(RunSpec.model_validate_json(text))
        return RunOutcome(end="error", exit_code=1, message="not run")


def cooling_study(tmp_path, gap_until_cool=True):
    path = tmp_path / "s.yaml"
    path.write_text("model: m\nbackend: pytorch\nexecution: {n_cycles: 1, config_gap_s: 0, "
                    f"cycle_gap_s: 0, gap_until_cool: {str(gap_until_cool).lower()}, "
                    "cool_margin_c: 3, cool_max_s: 60}\nsweep:\n  pytorch.batch_size: [1, 2]\n")
    return load_study(path)


def test_each_run_carries_the_outcome_of_its_cool_down_in_experiment_json(tmp_path):
    loaded = cooling_study(tmp_path)
    runner = SpecReader()
    # Host GPUs already at their idle temperature: the wait ends at its first look.
    gpus = GpuSet([FakeGpu([(0.0, 60.0)], index=i, temperature_c=[(0.0, 35.0 + i)])
                   for i in range(2)])
    events = []
    execution = StudyExecution(loaded, tmp_path / "out", runner, events.append,
                               cooling_gpus=gpus)
    (tmp_path / "out").mkdir()
    runs = plan(loaded)
    execution.execute(runs, new_manifest(loaded, runs, runner.name))

    first, second = (spec.cool_down for spec in runner.specs)
    assert first is not None and first.outcome == "first_run" and first.waited_s is None
    assert second is not None and second.outcome == "reached"
    assert second.waited_s is not None and second.waited_s >= 0.0
    assert not [e for e in events if e.kind == "cooling"]  # it never had to wait
    assert second.idle_c == [35.0, 36.0] and second.gpu_indices == [0, 1]
    assert second.margin_c == 3.0 and second.max_s == 60.0
    assert Cooled(waited_s=second.waited_s, outcome="reached") in events
    assert [e.kind for e in events if not isinstance(e, Cooled)] == [
        "run_started", "run_finished", "run_started", "run_finished"]
    assert events[-1] == RunFinished(run_id=runs[1].run_id, status="failed", cause="error")


def test_without_gap_until_cool_the_outcome_is_not_requested(tmp_path):
    loaded = cooling_study(tmp_path, gap_until_cool=False)
    runner = SpecReader()
    execution = StudyExecution(loaded, tmp_path / "out", runner)
    (tmp_path / "out").mkdir()
    runs = plan(loaded)
    execution.execute(runs, new_manifest(loaded, runs, runner.name))
    assert [spec.cool_down.outcome for spec in runner.specs if spec.cool_down] == [
        "not_requested", "not_requested"]


class KilledMidRun(Runner):
    """Its second run gets the second Ctrl-C (the KeyboardInterrupt the CLI raises)."""

    name = "killed-mid-run"

    def __init__(self) -> None:
        super().__init__()
        self.started = 0

    def run(self, run_dir, timeout_s, on_event, gpus=None):
        self.started += 1
        (run_dir / "container.log").write_text("loading\nwarming up\n")
        if self.started == 2:
            self.request_stop()  # the first Ctrl-C
            raise KeyboardInterrupt  # the second, while the runner waits for the run
        return RunOutcome(end="error", exit_code=1, message="not run")


def test_a_second_ctrl_c_records_the_killed_run_interrupted_and_writes_the_summary(tmp_path):
    loaded = study(tmp_path)
    runner = KilledMidRun()
    out = tmp_path / "out"
    out.mkdir()
    runs = plan(loaded)
    manifest = new_manifest(loaded, runs, runner.name)
    summary = StudyExecution(loaded, out, runner, no_gaps=True).execute(runs, manifest)
    assert runner.started == 2
    assert summary.interrupted is True
    assert summary.counts == {"failed": 1, "interrupted": 1, "pending": 4}
    saved = Manifest.load(out)
    killed = saved.runs[1]
    assert killed.status == "interrupted" and killed.failure is not None
    assert killed.failure.message == KILLED_NOW
    assert killed.failure.log_tail == ["loading", "warming up"]
    assert StudySummary.model_validate_json((out / "summary.json").read_text()) == summary


def gap_study(tmp_path, order, configurations=3, cycles=2):
    path = tmp_path / f"gaps-{order}-{configurations}x{cycles}.yaml"
    sizes = ", ".join(str(size) for size in range(1, configurations + 1))
    path.write_text(f"model: m\nbackend: pytorch\nexecution: {{n_cycles: {cycles}, cycle_order: "
                    f"{order}, config_gap_s: 7, cycle_gap_s: 30}}\n"
                    f"sweep:\n  pytorch.batch_size: [{sizes}]\n")
    return load_study(path)


def waited_gaps(loaded, out, done=()):
    """The fixed gaps a StudyExecution waits, in order (the first Gap event of each countdown).

    Runs in ``done`` (by (number, cycle)) are already completed, as on a resume.
    """
    runner = SpecReader()
    runner.stop_requested = InstantStop()
    events = []
    out.mkdir()
    runs = plan(loaded)
    manifest = new_manifest(loaded, runs, runner.name)
    for run, entry in zip(runs, manifest.runs, strict=True):
        if (run.number, run.cycle) in done:
            entry.status = "completed"
    StudyExecution(loaded, out, runner, events.append).execute(runs, manifest)
    assert len(runner.specs) == len(runs) - len(done)
    return [e.seconds for e in events if isinstance(e, Gap) and e.remaining_s == e.seconds]


# config_gap_s 7 between two runs, cycle_gap_s 30 in its place where the pause separates two
# cycles (every run before it is of an earlier cycle than every run after it).
GAPS_BY_DEFINITION = {
    # A1 B1 C1 | A2 B2 C2
    ("interleaved", 3): [7, 7, 30, 7, 7],
    # each cycle in its own seeded order, cycle 1 entirely before cycle 2
    ("shuffled", 3): [7, 7, 30, 7, 7],
    # A1 A2 B1 B2 C1 C2: cycles side by side, no pause separates two cycles
    ("sequential", 3): [7, 7, 7, 7, 7],
    # one configuration: every pause separates two cycles, whatever the order
    ("sequential", 1): [30],
    ("interleaved", 1): [30],
}


@pytest.mark.parametrize(("order", "configurations"), sorted(GAPS_BY_DEFINITION))
def test_the_gaps_waited_follow_their_definition_and_the_estimate(tmp_path, order,
                                                                   configurations):
    loaded = gap_study(tmp_path, order, configurations)
    waited = waited_gaps(loaded, tmp_path / "out")
    assert waited == GAPS_BY_DEFINITION[order, configurations]
    assert gaps_s(plan(loaded), loaded.execution) == sum(waited)


def test_sequential_order_never_waits_the_cycle_gap_between_configurations(tmp_path):
    path = tmp_path / "s.yaml"  # the reported study: no config gap, a 4 s cycle gap
    path.write_text("model: m\nbackend: pytorch\nexecution: {n_cycles: 3, cycle_order: "
                    "sequential, config_gap_s: 0, cycle_gap_s: 4}\n"
                    "sweep:\n  pytorch.batch_size: [1, 2]\n")
    loaded = load_study(path)
    assert waited_gaps(loaded, tmp_path / "out") == []
    assert gaps_s(plan(loaded), loaded.execution) == 0


def test_on_resume_a_pause_across_completed_runs_is_a_cycle_gap_if_it_spans_two_cycles(
        tmp_path):
    # interleaved A1 B1 C1 | A2 B2 C2 with B1, C1 and A2 completed: A1, B2, C2 run.
    loaded = gap_study(tmp_path, "interleaved")
    assert waited_gaps(loaded, tmp_path / "out", done={(2, 1), (3, 1), (1, 2)}) == [30, 7]
    # sequential A1 A2 B1 B2 C1 C2 with A2 and B1 completed: A1, B2, C1, C2 run.
    loaded = gap_study(tmp_path, "sequential")
    assert waited_gaps(loaded, tmp_path / "out2", done={(1, 2), (2, 1)}) == [7, 7, 7]


def test_no_gaps_waits_none_in_any_order(tmp_path):
    for order in ("interleaved", "shuffled", "sequential"):
        loaded = gap_study(tmp_path, order)
        runner = SpecReader()
        runner.stop_requested = stop = InstantStop()
        out = tmp_path / f"out-{order}"
        out.mkdir()
        runs = plan(loaded)
        StudyExecution(loaded, out, runner, no_gaps=True).execute(
            runs, new_manifest(loaded, runs, runner.name))
        assert stop.waits == [] and len(runner.specs) == 6


class RaisingMidStudy(Runner):
    """Completes every run but the second, for which it raises ``error`` (a runner's error,
    not an end of the harness it could classify): an image untagged mid-study, an engine gone.
    """

    name = "raising"

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.started: list[str] = []

    def run(self, run_dir, timeout_s, on_event, gpus=None):
        from llem_testkit.results import fake_result

        spec = RunSpec.model_validate_json((run_dir / "experiment.json").read_text())
        self.started.append(spec.run_id)
        if len(self.started) == 2:
            raise self.error
        (run_dir / "result.json").write_text(fake_result(spec, 100.0).model_dump_json())
        return RunOutcome(end="ok", exit_code=0)


def execute_raising(tmp_path, error: Exception) -> tuple[RaisingMidStudy, StudySummary, Path]:
    loaded = study(tmp_path)  # 3 configurations x 2 cycles, interleaved
    runner = RaisingMidStudy(error)
    out = tmp_path / "out"
    out.mkdir()
    runs = plan(loaded)
    manifest = new_manifest(loaded, runs, runner.name)
    summary = StudyExecution(loaded, out, runner, no_gaps=True).execute(runs, manifest)
    return runner, summary, out


def test_a_runner_error_in_one_run_fails_that_run_and_the_study_goes_on(tmp_path):
    from orchestrator.runners.docker.api import NotFoundError

    untagged = NotFoundError("image not found: llem/pytorch:latest",
                             fix="build it with: llem images build BACKEND")
    runner, summary, out = execute_raising(tmp_path, untagged)
    assert len(runner.started) == 6, "the study stopped at the run its runner could not run"
    runs = Manifest.load(out).runs
    assert [r.status for r in runs] == ["completed", "failed", *["completed"] * 4]
    failure = runs[1].failure
    assert failure is not None and failure.cause == "runner_error"
    assert "image not found: llem/pytorch:latest" in failure.message
    assert "NotFoundError" in failure.message
    assert summary.counts == {"completed": 5, "failed": 1}
    assert StudySummary.load(out) == summary
    assert (out / "results.parquet").is_file() and (out / "stats.json").is_file()


def test_a_runner_that_can_start_no_further_run_stops_the_study_with_its_summary(tmp_path):
    from orchestrator.runners.docker.api import EngineUnreachable

    gone = EngineUnreachable("no answer from the Docker engine: socket closed",
                             fix="start the Docker engine")
    runner, summary, out = execute_raising(tmp_path, gone)
    assert len(runner.started) == 2, "runs were started after the engine was gone"
    runs = Manifest.load(out).runs
    assert [r.status for r in runs] == ["completed", "failed", *["pending"] * 4]
    assert runs[1].failure is not None and runs[1].failure.cause == "runner_error"
    assert "socket closed" in runs[1].failure.message
    assert (out / runs[1].run_id / "container.log").read_text().startswith("llem: ")
    assert not summary.interrupted
    assert StudySummary.load(out).counts == {"completed": 1, "failed": 1, "pending": 4}
    assert (out / "results.parquet").is_file() and (out / "stats.json").is_file()


def test_a_bug_in_a_runner_stops_the_study_cleanly_and_names_the_error(tmp_path):
    # Not one of llem's errors: nothing says the next run would fare better, so the study stops
    # (a summary written, the rest pending for --resume) instead of failing every run alike.
    runner, summary, out = execute_raising(tmp_path, RuntimeError("a runner bug"))
    runs = Manifest.load(out).runs
    assert len(runner.started) == 2
    assert [r.status for r in runs] == ["completed", "failed", *["pending"] * 4]
    assert runs[1].failure is not None and runs[1].failure.cause == "runner_error"
    assert "RuntimeError: a runner bug" in runs[1].failure.message
    assert StudySummary.load(out) == summary


@pytest.mark.slow
def test_llem_run_records_a_runner_error_as_that_runs_failure_and_writes_the_summary(
        tiny_model_dir, tmp_path):
    # The local runner records every harness it starts under $XDG_STATE_HOME/llem; a state
    # home that is a file makes that fail once the harness started: an error of the runner,
    # not of the run's harness. Before: a traceback, every run left `running`, no summary.
    state_home = tmp_path / "state"
    state_home.write_text("not a directory\n")
    study_file = tmp_path / "s.yaml"
    study_file.write_text(
        f"name: t\nmodel: {tiny_model_dir}\nbackend: pytorch\nprecision: fp32\n"
        "n: 2\ninput_len: 8\noutput_len: 4\nwarmup: {n_warmup: 1, min_seconds: 0}\n"
        "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n"
        "sweep:\n  pytorch.batch_size: [1, 2]\n")
    done = llem("run", str(study_file), "--runner", "local", "--output", "out", "-q",
                "--json", cwd=tmp_path, env={**os.environ, "XDG_STATE_HOME": str(state_home)})
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    study_dir = only_study_dir(tmp_path / "out")
    summary = StudySummary.load(study_dir)
    assert json.loads(done.stdout)["counts"] == summary.counts == {"failed": 2}
    assert [f.cause for f in summary.failures] == ["runner_error", "runner_error"]
    assert all(str(state_home) in f.message for f in summary.failures), summary.failures
    assert [r.status for r in Manifest.load(study_dir).runs] == ["failed", "failed"]


def test_a_run_whose_folder_cannot_be_written_fails_and_the_study_goes_on(tmp_path,
                                                                          monkeypatch):
    # For a user: a run folder holding files a container left, owned by root.
    from llem_testkit.runners import ResultWriter

    import orchestrator.execute

    real_write_json = orchestrator.execute.write_json
    written: list[str] = []

    def write_json(path, data):
        if path.name == "experiment.json":
            written.append(path.parent.name)
            if len(written) == 2:
                raise PermissionError(13, "Permission denied", str(path))
        real_write_json(path, data)

    monkeypatch.setattr(orchestrator.execute, "write_json", write_json)
    runner = ResultWriter()
    loaded = study(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    runs = plan(loaded)
    summary = StudyExecution(loaded, out, runner, no_gaps=True).execute(
        runs, new_manifest(loaded, runs, runner.name))
    entries = Manifest.load(out).runs
    assert [r.status for r in entries] == ["completed", "failed", *["completed"] * 4]
    failure = entries[1].failure
    assert failure is not None and failure.cause == "runner_error"
    assert "PermissionError" in failure.message and str(out / entries[1].run_id) in failure.message
    assert entries[1].run_id not in Manifest.load(out).executed  # it never started
    assert summary.counts == {"completed": 5, "failed": 1}
    assert StudySummary.load(out) == summary
