"""Defects found in a review of the fixes to the lanes review (``test_review_lanes.py``).

Each test failed before its defect was fixed. ``FakeCluster``
(llem_testkit.slurm_cluster) plays Slurm 22.05's commands in memory; each test moves the jobs
as a real cluster would at the moment it describes.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from llem_testkit.slurm_cluster import (
    NODES,
    FakeCluster,
    complete,
    detach,
    job_of,
    make_runner,
    make_study,
    new_study_dir,
    simulated_time,
    write_result,
)

from orchestrator.execute import StudyExecution, plan
from orchestrator.manifest import Manifest
from orchestrator.runners.base import Runner, RunOutcome
from orchestrator.runners.slurm.client import SlurmClient
from orchestrator.runners.slurm.runner import job_record
from orchestrator.study import load_study
from orchestrator.study_dir import new_manifest

BUSY = "squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation\n"








def age_records(study_dir: Path, seconds: float) -> None:
    """The jobs were submitted ``seconds`` ago (a resume the next morning)."""
    for record in (study_dir / ".slurm").glob("*.json"):
        data = json.loads(record.read_text())
        data["submitted_at"] = time.time() - seconds
        record.write_text(json.dumps(data))


def cluster_runs_jobs(cluster: FakeCluster, study_dir: Path) -> None:
    """A squeue hook: a job whose dependency ended starts; a running one completes.

    Jobs are matched to their run by name (``llem-RUN``), not by the run's record, so a job
    llem lost track of runs (and writes its run directory) as on a real cluster.
    """

    def step() -> None:
        for job_id, job in list(cluster.jobs.items()):
            after = cluster.after(job_id)
            ready = after is None or cluster.jobs[after]["job_state"] not in ("PENDING",
                                                                              "RUNNING")
            if job["job_state"] == "RUNNING":
                run_dir = study_dir / job["name"].removeprefix("llem-")
                if (run_dir / "experiment.json").is_file():
                    write_result(run_dir)
                cluster.set(job_id, "COMPLETED")
            elif job["job_state"] == "PENDING" and ready:
                cluster.set(job_id, "RUNNING")

    cluster.on_squeue.append(step)


def busy_once(cluster: FakeCluster) -> Any:
    """``subprocess.run`` of a controller that times out on the first squeue, then answers."""
    squeues = []

    def run(args: list[str], **kwargs: Any) -> Any:
        if args[0] == "squeue":
            squeues.append(1)
            if len(squeues) == 1:
                return subprocess.CompletedProcess(args, 1, "", BUSY)
        return cluster(args, **kwargs)

    return run


def submissions_of(cluster: FakeCluster, run_id: str) -> list[str]:
    return [job_id for job_id, options in cluster.submitted
            if f"--job-name=llem-{run_id}" in options]


# -- a controller busy for one read on a resume: running jobs taken for gone ------------------


@pytest.mark.parametrize("slurm", [{}, {"nodes": NODES}], ids=["one-at-a-time", "lanes"])
def test_a_busy_controller_on_a_resume_does_not_start_a_running_run_again(tmp_path, slurm):
    cluster = FakeCluster()
    study = make_study(tmp_path, cycles=2, slurm=slurm or None)
    study_dir, manifest, runs = new_study_dir(tmp_path, study)
    detach(study, study_dir, manifest, runs, cluster, **slurm)  # llem run --detach
    first = manifest.runs[0].run_id
    cluster.set(job_of(study_dir, first), "RUNNING")
    age_records(study_dir, 3600)  # llem run --resume DIR an hour later

    runner = make_runner(cluster, **slurm)
    runner.client = SlurmClient(run=busy_once(cluster))  # one read times out
    runner.watcher.client = runner.client
    cluster_runs_jobs(cluster, study_dir)
    StudyExecution(study, study_dir, runner)._execute(runs, manifest)

    assert submissions_of(cluster, first) == ["100"], (
        f"run {first} was submitted again (jobs {submissions_of(cluster, first)}) while its job "
        "100 still ran: one squeue that timed out read as 'the job is gone'; two jobs wrote "
        "one run directory")


# -- a node failure drops runs its node has since run -----------------------------------------


def test_a_node_failure_keeps_a_run_the_node_completed_once_it_was_back(tmp_path):
    cluster = FakeCluster()
    study = make_study(tmp_path, cycles=2, slurm={"nodes": NODES})
    study_dir, manifest, runs = new_study_dir(tmp_path, study)
    # cycle 1 to n1 (plan positions 0, 1), cycle 2 to n2 (2, 3); followed in that order
    p0, p1, p2, p3 = (entry.run_id for entry in manifest.runs)
    reads = []

    def cluster_moves() -> None:
        reads.append(1)
        if len(reads) == 1:
            cluster.set(job_of(study_dir, p0), "RUNNING")
            cluster.set(job_of(study_dir, p2), "NODE_FAIL")  # n2 failed under p2 ...
            cluster.set(job_of(study_dir, p3), "RUNNING")  # ... came back; p3 (afterany) runs
        elif len(reads) == 2:
            complete(cluster, study_dir, p3)  # while llem still follows n1's runs
        else:
            for run_id in (p0, p1):
                state = cluster.jobs[job_of(study_dir, run_id)]["job_state"]
                if state == "RUNNING":
                    complete(cluster, study_dir, run_id)
                    break
                if state == "PENDING":
                    cluster.set(job_of(study_dir, run_id), "RUNNING")
                    break

    cluster.on_squeue.append(cluster_moves)
    StudyExecution(study, study_dir, make_runner(cluster, nodes=NODES))._execute(
        runs, manifest)

    statuses = {entry.run_id: entry.status for entry in manifest.runs}
    assert statuses[p2] == "failed"  # its node failed under it
    assert (study_dir / p3 / "result.json").is_file()
    assert statuses[p3] == "completed", (
        f"run {p3} ran on n2 once the node was back and completed with its result, but is "
        f"recorded {statuses[p3]}: "
        f"{next(e.failure.message for e in manifest.runs if e.run_id == p3 and e.failure)}")


# -- a stop records 'completed' what Slurm says failed ----------------------------------------


def test_a_stop_records_a_failed_job_of_another_lane_as_following_it_would(tmp_path):
    cluster = FakeCluster()
    study = make_study(tmp_path, cycles=2, slurm={"nodes": NODES})
    study_dir, manifest, runs = new_study_dir(tmp_path, study)
    runner = make_runner(cluster, nodes=NODES)
    followed, other = manifest.runs[0].run_id, manifest.runs[2].run_id  # lane n1, lane n2
    reads = []

    def cluster_moves() -> None:
        reads.append(1)
        if len(reads) == 1:
            cluster.set(job_of(study_dir, followed), "RUNNING")
            cluster.set(job_of(study_dir, other), "RUNNING")
        if len(reads) == 3:
            # n2's harness wrote result.json, then failed while unloading the engine (exit 1)
            write_result(study_dir / other)
            cluster.set(job_of(study_dir, other), "FAILED", exit_code=1 << 8)
        if len(reads) == 4:
            runner.request_stop()  # Ctrl-C while llem follows n1's run

    cluster.on_squeue.append(cluster_moves)
    StudyExecution(study, study_dir, runner)._execute(runs, manifest)

    entry = next(e for e in manifest.runs if e.run_id == other)
    assert entry.status == "failed", (
        f"job {job_of(study_dir, other)} ended FAILED (exit 1); followed, its run is recorded "
        f"failed, but the Ctrl-C recorded it {entry.status}")


class CrashAfterResult(Runner):
    """A runner on this host (as Docker's or the local one) whose runs fail; on the run named
    ``crash`` the harness writes result.json and then the orchestrator dies (SIGKILL, a
    reboot): the run stays 'running' in the manifest; on the run named ``ctrl_c`` the user
    presses Ctrl-C."""

    name = "docker"

    def __init__(self, crash: str | None = None, ctrl_c: str | None = None) -> None:
        super().__init__()
        self.crash, self.ctrl_c = crash, ctrl_c
        self.started: list[str] = []

    def run(self, run_dir, timeout_s, on_event, gpus=None):
        self.started.append(run_dir.name)
        if run_dir.name == self.crash:
            write_result(run_dir)  # measured; the harness still unloads the engine
            raise SystemExit("the orchestrator died")
        if run_dir.name == self.ctrl_c:
            self.request_stop()
            return RunOutcome(end="interrupted", exit_code=None, message="stopped by the user")
        return RunOutcome(end="error", exit_code=1, message="failed")


def test_a_ctrl_c_on_a_host_runners_resume_does_not_take_a_killed_runs_result(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("model: m\nbackend: pytorch\nexecution: {n_cycles: 1, config_gap_s: 0, "
                    "cycle_gap_s: 0}\nsweep:\n  pytorch.batch_size: [1, 2]\n")
    study = load_study(path)
    out = tmp_path / "out"
    out.mkdir()
    runs = plan(study)
    manifest = new_manifest(study, runs, "docker")
    first, second = (entry.run_id for entry in manifest.runs)
    with pytest.raises(SystemExit):  # the first run fails; the orchestrator dies in the second
        StudyExecution(study, out, CrashAfterResult(crash=second)).execute(runs, manifest)
    manifest = Manifest.load(out)
    assert [entry.status for entry in manifest.runs] == ["failed", "running"]

    # llem run --resume DIR: the failed run goes first; Ctrl-C during it
    StudyExecution(study, out, CrashAfterResult(ctrl_c=first)).execute(runs, manifest)

    killed = next(entry for entry in manifest.runs if entry.run_id == second)
    assert killed.status != "completed", (
        "a run whose harness was killed before it exited (no exit status, no done line) is "
        "recorded completed from the result.json it left, only because a Ctrl-C came first")


# -- the one watcher: a resume of a study run one job at a time -------------------------------




def test_a_resume_after_detach_reads_the_ended_jobs_with_few_squeue_calls(tmp_path):
    cluster = FakeCluster()
    path = tmp_path / "sweep.yaml"
    path.write_text("model: m\nbackend: pytorch\nexecution: {config_gap_s: 0, cycle_gap_s: 0, "
                    "n_cycles: 2}\nsweep:\n  pytorch.batch_size: "
                    f"{list(range(1, 26))}\n")
    study = load_study(path)
    study_dir, manifest, runs = new_study_dir(tmp_path, study)
    detach(study, study_dir, manifest, runs, cluster)  # llem run --detach, one at a time
    for entry in manifest.runs:  # every job ended with its result ...
        complete(cluster, study_dir, entry.run_id)
    cluster.jobs.clear()  # ... long enough ago (MinJobAge) that squeue lists none of them
    calls: list[float] = []
    runner = make_runner(cluster, poll_s=5)
    now = simulated_time(runner)
    cluster.on_squeue.append(lambda: calls.append(now[0]))

    StudyExecution(study, study_dir, runner)._execute(runs, manifest)  # llem run --resume DIR

    assert [entry.status for entry in manifest.runs] == ["completed"] * 50
    assert len(calls) <= 10 and now[0] <= 60, (
        f"reading 50 ended runs took {len(calls)} squeue calls and {now[0]:.0f} s of waiting")


# -- a failed sbatch whose job the controller did create --------------------------------------


def test_an_sbatch_timeout_whose_job_was_created_leaves_no_job_unfollowed(tmp_path):
    cluster = FakeCluster()
    study = make_study(tmp_path, cycles=2, slurm={"nodes": NODES})
    study_dir, manifest, runs = new_study_dir(tmp_path, study)
    sbatch_calls = []

    def busy_controller(args: list[str], **kwargs: Any) -> Any:
        if args[0] == "sbatch":
            sbatch_calls.append(1)
            if len(sbatch_calls) == 3:  # the job is created; the answer to sbatch is lost
                cluster(args, **kwargs)
                return subprocess.CompletedProcess(
                    args, 1, "", "sbatch: error: Batch job submission failed: Socket timed "
                    "out on send/recv operation\n")
        return cluster(args, **kwargs)

    runner = make_runner(cluster, nodes=NODES)
    runner.client = SlurmClient(run=busy_controller)
    runner.watcher.client = runner.client
    cluster_runs_jobs(cluster, study_dir)

    StudyExecution(study, study_dir, runner)._execute(runs, manifest)

    third = manifest.runs[2].run_id
    assert [e.status for e in manifest.runs if e.run_id == third] == ["failed"]
    recorded = job_of(study_dir, third) if job_record(study_dir / third).is_file() else None
    orphans = [job_id for job_id in submissions_of(cluster, third)
               if job_id != recorded and job_id not in cluster.cancelled]
    assert not orphans, (
        f"job {orphans} of run {third} ran on the cluster unknown to llem, neither followed "
        "nor cancelled (its sbatch 'failed'), and wrote the run's directory; the run is "
        "recorded failed and --resume would submit it again")
