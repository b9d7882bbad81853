"""Defects of the Slurm runner found in review, each as a test that fails until it is fixed.

``FakeCluster`` (llem_testkit.slurm_cluster) plays Slurm 22.05's commands (``sbatch
--parsable``, ``squeue --json`` in OpenAPI v0.0.38, ``scancel``, no accounting) in memory; each
test sets the jobs' states as the real cluster would have them at the moment it describes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from llem_testkit.results import fake_result
from llem_testkit.slurm_cluster import (
    FakeCluster,
    job_of,
    make_runner,
    make_study,
    new_study_dir,
)

from harness.io import write_json
from harness.schema.reading import read_model
from harness.schema.run_spec import RunSpec
from orchestrator.execute import StudyExecution
from orchestrator.manifest import Manifest
from orchestrator.runners.slurm import script as scripts
from orchestrator.runners.slurm.client import SlurmClient
from orchestrator.runners.slurm.preflight import setting_problems
from orchestrator.runners.slurm.runner import SlurmRunner, job_record
from orchestrator.study.execution import SlurmConfig


def detached_study(tmp_path: Path, cluster: FakeCluster,
                   gap: float = 0.0) -> tuple[Any, Path, Manifest, list[Any]]:
    """A study of two runs, both submitted with ``--detach``; the study dir, manifest, runs."""
    study = make_study(tmp_path, gap=gap)
    study_dir, manifest, runs = new_study_dir(tmp_path, study)
    StudyExecution(study, study_dir, make_runner(cluster), detach=True)._run_pending(
        runs, manifest)
    assert [entry.status for entry in manifest.runs] == ["running", "running"]
    return study, study_dir, manifest, runs


def test_resume_detach_collects_a_finished_job_instead_of_rerunning_it(tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = detached_study(tmp_path, cluster)
    first, second = manifest.runs
    cluster.set(job_of(study_dir, first.run_id), "COMPLETED")
    run_dir = study_dir / first.run_id  # the job's result, as the harness writes it
    spec = read_model(run_dir / "experiment.json", RunSpec)
    write_json(run_dir / "result.json", fake_result(spec, energy_j=100.0))
    cluster.set(job_of(study_dir, second.run_id), "RUNNING")
    before = len(cluster.submitted)

    StudyExecution(study, study_dir, make_runner(cluster), detach=True)._run_pending(
        runs, manifest)

    assert len(cluster.submitted) == before, "the finished run was submitted again"
    assert (study_dir / first.run_id / "result.json").is_file()
    assert [entry.status for entry in manifest.runs] == ["completed", "running"]


def test_resume_detach_chains_new_jobs_after_the_ones_still_alive(tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = detached_study(tmp_path, cluster)
    first, second = manifest.runs
    cluster.set(job_of(study_dir, first.run_id), "FAILED", exit_code=1 << 8)
    alive = job_of(study_dir, second.run_id)
    cluster.set(alive, "RUNNING")
    before = len(cluster.submitted)

    StudyExecution(study, study_dir, make_runner(cluster), detach=True)._run_pending(
        runs, manifest)

    new = cluster.submitted[before:]
    assert new, "the failed run was not resubmitted"
    for _, options in new:
        assert any(option.startswith("--dependency=") and alive in option
                   for option in options), f"job submitted beside running job {alive}: {options}"


def test_second_ctrl_c_leaves_no_job_alive_behind_an_interrupted_run(tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = detached_study(tmp_path, cluster)
    first, second = manifest.runs
    cluster.set(job_of(study_dir, first.run_id), "RUNNING")
    calls = []

    def second_ctrl_c() -> None:  # the signal handler raises in the follow loop
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt

    cluster.on_squeue.append(second_ctrl_c)
    execution = StudyExecution(study, study_dir, make_runner(cluster))
    execution._execute(runs, manifest)

    for entry in manifest.runs:
        if entry.status == "interrupted":
            job_id = job_of(study_dir, entry.run_id)
            assert job_id not in cluster.alive(), (
                f"{entry.run_id} recorded interrupted while its job {job_id} is still queued")


def test_ctrl_c_cancels_every_job_of_the_study(tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = detached_study(tmp_path, cluster)
    cluster.set(job_of(study_dir, manifest.runs[0].run_id), "RUNNING")
    runner = make_runner(cluster)
    calls = []

    def ctrl_c() -> None:
        calls.append(1)
        if len(calls) == 5:
            runner.request_stop()

    cluster.on_squeue.append(ctrl_c)
    StudyExecution(study, study_dir, runner)._execute(runs, manifest)

    assert runner.stop_requested.is_set()
    assert cluster.alive() == set(), f"jobs left on the cluster: {cluster.alive()}"


def test_adopting_a_detached_job_does_not_time_its_gap_as_the_run(tmp_path):
    cluster = FakeCluster()
    study = make_study(tmp_path, gap=60.0, stall=20.0)
    study_dir, manifest, runs = new_study_dir(tmp_path, study)
    StudyExecution(study, study_dir, make_runner(cluster), detach=True)._run_pending(
        runs, manifest)
    second = manifest.runs[1]
    assert "sleep 60" in job_record(study_dir / second.run_id).with_suffix(".sh").read_text()
    job_id = job_of(study_dir, second.run_id)
    cluster.set(job_id, "RUNNING")  # it sleeps its 60 s gap: no harness, no event yet

    runner = make_runner(cluster)
    runner.stall_timeout_s = study.execution.stall_timeout_s
    now = [0.0]
    runner.clock = lambda: now[0]

    def tick(seconds: float) -> None:
        now[0] += seconds
        if now[0] >= 45:  # still inside the gap: the job then ends by itself
            cluster.set(job_id, "COMPLETED")

    runner.sleep = tick
    outcome = runner.adopt(study_dir / second.run_id, study.execution.timeout_s,
                           lambda event: None)

    assert outcome is not None
    assert outcome.end != "stalled", outcome.message


def test_a_job_whose_record_cannot_be_written_is_cancelled(tmp_path):
    cluster = FakeCluster()
    study = make_study(tmp_path)
    study_dir, manifest, runs = new_study_dir(tmp_path, study)
    runner = make_runner(cluster)
    execution = StudyExecution(study, study_dir, runner)
    entry = manifest.runs[0]
    execution._prepare(runs[0], entry, manifest, None)
    job_record(study_dir / entry.run_id).mkdir(parents=True)  # the record cannot be written

    with pytest.raises(OSError):
        runner.run(study_dir / entry.run_id, 600.0, lambda event: None)

    assert cluster.submitted, "nothing was submitted"
    assert cluster.alive() == set(), f"job(s) {cluster.alive()} left running, unrecorded"


class Died(BaseException):
    """The orchestrator process died here (SIGKILL, SIGHUP, the login node rebooted)."""


def test_resume_never_adopts_the_job_of_an_earlier_attempt(tmp_path):
    cluster = FakeCluster()
    study = make_study(tmp_path)
    study_dir, manifest, runs = new_study_dir(tmp_path, study, runs=1)
    entry = manifest.runs[0]
    run_dir = study_dir / entry.run_id
    # the first attempt: its job failed and was recorded so
    old = cluster.add("FAILED", f"llem-{entry.run_id}", exit_code=1 << 8)
    job_record(run_dir).parent.mkdir(parents=True)
    job_record(run_dir).write_text(json.dumps({"job_id": old, "time_limit": "65"}))
    entry.status = "failed"

    def dies_during_sbatch(args: Sequence[str], **kwargs: Any) -> Any:
        done = cluster(args, **kwargs)
        if args[0] == "sbatch":  # the job is in the queue; the answer never reaches llem
            raise Died
        return done

    runner = make_runner(cluster)
    runner.client = SlurmClient(run=dies_during_sbatch)
    with pytest.raises(Died):
        StudyExecution(study, study_dir, runner)._run_pending(runs, manifest)
    new = cluster.submitted[-1][0]
    cluster.set(new, "RUNNING")
    reads = []

    def ends_after_a_while() -> None:  # the new attempt's job, followed, ends by itself
        reads.append(1)
        if len(reads) == 5 and cluster.jobs[new]["job_state"] == "RUNNING":
            cluster.set(new, "COMPLETED")

    cluster.on_squeue.append(ends_after_a_while)
    resumed = Manifest.load(study_dir)
    assert resumed.runs[0].status == "running"
    StudyExecution(study, study_dir, make_runner(cluster))._run_pending(runs, resumed)

    (entry,) = resumed.runs
    message = entry.failure.message if entry.failure else ""
    assert f"Slurm job {old}" not in message, f"the new attempt was recorded as job {old}"
    assert new not in cluster.alive(), f"job {new} runs on, unfollowed"
    assert len(reads) >= 5, "the new attempt's job was not followed"
    assert len(cluster.submitted) == 1, "the run was submitted a second time beside its job"


@pytest.mark.parametrize("option", ["--requ", "--parti=gpu", "--outp=/elsewhere/%j.log",
                                    "--chd=/elsewhere", "--nodes=2", "-N2", "--ntasks=4",
                                    "-n4"])
def test_sbatch_options_overriding_llems_are_refused(option):
    runner = SlurmRunner(SlurmConfig(sbatch_options=[option]), client=SlurmClient(
        run=FakeCluster()))
    assert setting_problems(runner, set(), None), f"{option} was accepted"


def test_a_job_launch_failure_is_recorded_with_slurms_reason(tmp_path):
    cluster = FakeCluster()
    study = make_study(tmp_path)
    study_dir, manifest, runs = new_study_dir(tmp_path, study, runs=1)
    runner = make_runner(cluster)

    def launch_fails() -> None:  # as squeue --json showed job 1118 of the real cluster
        for job in cluster.jobs.values():
            if job["job_state"] == "PENDING":
                job.update(job_state="FAILED", exit_code=4021, state_reason="JobLaunchFailure",
                           nodes="vm")

    cluster.on_squeue.append(launch_fails)
    StudyExecution(study, study_dir, runner)._run_pending(runs, manifest)

    (entry,) = manifest.runs
    assert entry.failure is not None
    assert "JobLaunchFailure" in entry.failure.message, entry.failure.message


def test_the_log_option_escapes_percent(tmp_path):
    log = tmp_path / "p%jq" / "run" / "container.log"
    options = scripts.sbatch_options(SlurmConfig(), scripts.JobRequest(
        name="llem-run", comment="c", log=log, workdir=tmp_path, time_limit="5", gpus=0))
    output = next(o for o in options if o.startswith("--output="))
    assert output == f"--output={str(log).replace('%', '%%')}"


def test_queue_position_counts_earlier_jobs_of_equal_priority():
    cluster = FakeCluster()
    ahead = cluster.add("PENDING", priority=1000)
    ours = cluster.add("PENDING", priority=1000)
    _, positions = SlurmClient(run=cluster).jobs_and_queue([ours])
    assert ahead != ours
    assert positions[ours] == 2


def test_a_job_held_for_a_reason_no_wait_clears_stops_the_study(tmp_path):
    cluster = FakeCluster()
    study = make_study(tmp_path)
    study_dir, manifest, runs = new_study_dir(tmp_path, study)

    def partition_too_short() -> None:  # --time above the partition's MaxTime
        for job in cluster.jobs.values():
            if job["job_state"] == "PENDING":
                job["state_reason"] = "PartitionTimeLimit"

    cluster.on_squeue.append(partition_too_short)
    StudyExecution(study, study_dir, make_runner(cluster))._run_pending(runs, manifest)

    first, second = manifest.runs
    assert first.failure is not None and "PartitionTimeLimit" in first.failure.message
    assert second.status == "pending", "a second job was submitted to wait for ever too"
    assert cluster.alive() == set()
