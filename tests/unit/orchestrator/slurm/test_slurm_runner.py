"""One watcher asks the controller once per period for every job; the runner follows one job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.schema import ExperimentConfig
from harness.schema.events import JobQueued
from harness.schema.run_spec import RunSpec
from orchestrator.runners.slurm.client import SlurmClient
from orchestrator.runners.slurm.runner import MISSING_READS, JobWatcher, SlurmRunner, job_record
from orchestrator.study.execution import SlurmConfig


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def running_jobs(canned: SimpleNamespace, ids: list[str]) -> list[dict[str, Any]]:
    return [dict(canned.JOBS_22_05["completed"], job_id=int(i), job_state="RUNNING")
            for i in ids]


# --- the watcher ------------------------------------------------------------------------------


def test_one_squeue_call_per_period_whatever_the_number_of_jobs_and_reads(canned, recorder):
    ids = ["101", "102", "103", "104", "105"]
    recorder.on("squeue", stdout=canned.squeue_json(running_jobs(canned, ids)))
    clock = Clock()
    client = SlurmClient(run=recorder)
    watcher = JobWatcher(client, poll_s=5.0, clock=clock)
    for job_id in ids:
        watcher.track(job_id)
    while clock.now < 20.0:  # every job read three times a second, for 20 s
        for _ in range(3):
            for job_id in ids:
                job = watcher.state(job_id)
                assert job is not None and job.state == "RUNNING"
        clock.sleep(1.0 / 3)
    assert len(recorder.commands("squeue")) == 4  # at 0, 5, 10 and 15 s
    assert client.calls == 4  # and nothing else: every job listed, no accounting asked


def test_a_fresh_read_asks_at_once(canned, recorder):
    recorder.on("squeue", stdout=canned.squeue_json(running_jobs(canned, ["101"])))
    watcher = JobWatcher(SlurmClient(run=recorder), poll_s=5.0, clock=Clock())
    watcher.track("101")
    watcher.state("101")
    watcher.state("101")
    watcher.state("101", fresh=True)
    assert len(recorder.commands("squeue")) == 2


def test_a_job_is_gone_after_three_absent_reads(canned, recorder):
    recorder.on("squeue", stdout=canned.squeue_json(running_jobs(canned, ["101"])))
    recorder.on("sacct", stderr=canned.SACCT_DISABLED, returncode=1)
    watcher = JobWatcher(SlurmClient(run=recorder), poll_s=5.0, clock=Clock())
    watcher.track("101")
    watcher.track("999")
    seen = []
    for _ in range(MISSING_READS):
        assert watcher.state("999", fresh=True) is None
        seen.append(watcher.gone("999"))
    assert MISSING_READS == 3 and seen == [False, False, True]
    assert not watcher.gone("101")
    assert len(recorder.commands("sacct")) == 1  # whether accounting runs: asked once


def test_a_job_listed_again_is_no_longer_counted_missing(canned, recorder):
    listings = [[], [], running_jobs(canned, ["7"]), [], []]
    recorder.answer("squeue", lambda args, kwargs: subprocess.CompletedProcess(
        args, 0, canned.squeue_json(listings.pop(0))))
    recorder.on("sacct", stderr=canned.SACCT_DISABLED, returncode=1)
    watcher = JobWatcher(SlurmClient(run=recorder), poll_s=5.0, clock=Clock())
    watcher.track("7")
    gone = []
    for _ in range(5):
        watcher.state("7", fresh=True)
        gone.append(watcher.gone("7"))
    assert gone == [False] * 5  # two absent reads, listed, two absent reads: never three
    assert watcher.state("7") is not None  # the last listing is kept


def test_jobs_the_controller_forgot_are_read_from_accounting_in_one_call(canned, recorder):
    ids = ["101", "102", "103", "104", "105"]
    recorder.on("squeue", stdout=canned.squeue_json(running_jobs(canned, ids[:2])))

    def sacct(args, kwargs):
        if args[-2:] == ["-j", "0"]:  # the probe: accounting runs
            return subprocess.CompletedProcess(args, 0, "", "")
        asked = args[-1].split(",")
        lines = [f"{i}|COMPLETED|0:0|gpu-0{i[-1]}|None" for i in asked]
        return subprocess.CompletedProcess(args, 0, "\n".join(lines) + "\n", "")

    recorder.answer("sacct", sacct)
    watcher = JobWatcher(SlurmClient(run=recorder), poll_s=5.0, clock=Clock())
    for job_id in ids:
        watcher.track(job_id)
    for job_id in ids:
        assert watcher.state(job_id) is not None
    probe, lookup = recorder.commands("sacct")
    assert probe[-2:] == ["-j", "0"]
    assert lookup[-2:] == ["-j", "103,104,105"]
    job = watcher.state("104")
    assert job is not None and (job.state, job.source, job.node) == ("COMPLETED", "sacct",
                                                                     "gpu-04")
    assert not any(watcher.gone(job_id) for job_id in ids)


def test_queue_positions_and_forgetting(canned, recorder):
    jobs = canned.JOBS_22_05
    recorder.on("squeue", stdout=canned.squeue_json([jobs["pending"], jobs["begin"]]))
    watcher = JobWatcher(SlurmClient(run=recorder), poll_s=5.0, clock=Clock())
    watcher.track("120")
    job = watcher.state("120")
    assert job is not None and job.reason == "BeginTime"
    assert watcher.positions == {"120": 2}
    watcher.forget("120")
    assert watcher.state("120", fresh=True) is None
    assert len(recorder.commands("squeue")) == 1  # nothing tracked: nothing asked


# --- the runner, on a recorded controller -------------------------------------------------------


def study_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "study" / "001_pytorch_c1"
    run_dir.mkdir(parents=True)
    spec = RunSpec(run_id=run_dir.name, study="s", runner="slurm",
                   config=ExperimentConfig(model="org/model", backend="pytorch"))
    (run_dir / "experiment.json").write_text(spec.model_dump_json())
    return run_dir


def slurm_runner(recorder: Any, **settings: Any) -> tuple[SlurmRunner, list[JobQueued]]:
    runner = SlurmRunner(SlurmConfig(exec="local", python=sys.executable, **settings),
                         client=SlurmClient(run=recorder))
    clock = Clock()
    runner.clock, runner.sleep, runner.watcher.clock = clock, clock.sleep, clock
    events: list[JobQueued] = []
    runner.on_study_event = events.append  # type: ignore[assignment]
    return runner, events


def scripted_squeue(recorder: Any, canned: SimpleNamespace,
                    listings: list[list[dict[str, Any]]]) -> None:
    """squeue answers each listing in turn, then the last one forever."""
    def answer(args: list[str], kwargs: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        jobs = listings.pop(0) if len(listings) > 1 else listings[0]
        return subprocess.CompletedProcess(args, 0, canned.squeue_json(jobs))
    recorder.answer("squeue", answer)


def test_a_job_queued_then_run_then_completed_is_ok(tmp_path, canned, recorder):
    run_dir = study_run(tmp_path)
    base = dict(canned.JOBS_22_05["pending"], job_id=4242)
    ahead = dict(base, job_id=4000, priority=base["priority"] + 1)
    scripted_squeue(recorder, canned, [
        [ahead, base], [ahead, base],
        [dict(base, job_state="RUNNING", state_reason="None", nodes="vm")],
        [dict(base, job_state="COMPLETED", state_reason="None", nodes="vm")]])
    recorder.on("sbatch", stdout="4242\n")
    runner, events = slurm_runner(recorder, partition="debug")
    outcome = runner.run(run_dir, 3600.0, lambda event: None)
    assert (outcome.end, outcome.exit_code) == ("ok", 0)
    ((args, kwargs),) = [call for call in recorder.calls if call[0][0] == "sbatch"]
    assert "--partition=debug" in args and "--time=65" in args
    assert kwargs["input"] == job_record(run_dir).with_suffix(".sh").read_text()
    record = json.loads(job_record(run_dir).read_text())
    assert record["job_id"] == "4242" and record["options"] == args[2:]
    assert [(e.state, e.reason, e.position, e.node) for e in events] == [
        ("PENDING", "Resources", 2, ""), ("RUNNING", "", None, "vm")]
    assert all(e.job_id == "4242" and e.run_id == run_dir.name for e in events)
    assert recorder.commands("scancel") == []  # it ended by itself


def test_ctrl_c_while_queued_cancels_the_job(tmp_path, canned, recorder):
    run_dir = study_run(tmp_path)
    base = dict(canned.JOBS_22_05["pending"], job_id=4242)
    scripted_squeue(recorder, canned, [[base], [dict(base, job_state="CANCELLED")]])
    recorder.on("sbatch", stdout="4242\n")
    recorder.on("scancel")
    runner, _ = slurm_runner(recorder)
    runner.request_stop()
    outcome = runner.run(run_dir, 3600.0, lambda event: None)
    assert outcome.end == "interrupted"
    assert recorder.commands("scancel") == [["scancel", "4242"]]


def test_a_refused_submission_is_a_fatal_runner_error(tmp_path, canned, recorder):
    run_dir = study_run(tmp_path)
    recorder.on("sbatch", stderr=canned.SBATCH_BAD_PARTITION, returncode=1)
    runner, _ = slurm_runner(recorder, partition="nope")
    outcome = runner.run(run_dir, 3600.0, lambda event: None)
    assert outcome.end == "runner_error" and outcome.fatal
    assert "Invalid partition name specified" in outcome.message
    assert not job_record(run_dir).exists()  # no job: no record


def test_the_watcher_rides_out_a_controller_busy_for_a_moment_and_gives_up_after_five():
    from orchestrator.runners.slurm.client import SlurmError
    from orchestrator.runners.slurm.runner import CONTROLLER_ERRORS, JobWatcher

    class Flaky(SlurmClient):
        def __init__(self, failures: int) -> None:
            super().__init__()
            self.failures = failures

        def jobs_and_queue(self, job_ids):  # type: ignore[no-untyped-def]
            if self.failures:
                self.failures -= 1
                raise SlurmError("squeue --json got no answer within 60 s")
            return {}, {}

        def accounting(self) -> bool:
            return False

    watcher = JobWatcher(Flaky(CONTROLLER_ERRORS - 1), poll_s=5.0)
    watcher.track("7")
    for _ in range(CONTROLLER_ERRORS):
        assert watcher.state("7", fresh=True) is None  # four failures, then an answer
    watcher = JobWatcher(Flaky(CONTROLLER_ERRORS), poll_s=5.0)
    watcher.track("7")
    for _ in range(CONTROLLER_ERRORS - 1):
        watcher.state("7", fresh=True)
    with pytest.raises(SlurmError):
        watcher.state("7", fresh=True)
