"""Defects of the Slurm runner's lanes (``execution.slurm.nodes`` / ``lanes``) found in review.

Each test failed before its defect was fixed. ``FakeCluster``
(llem_testkit.slurm_cluster) plays Slurm 22.05's commands in memory; each test moves the jobs
as a real cluster would at the moment it describes.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

from llem_testkit.slurm_cluster import (
    NODES,
    FakeCluster,
    complete,
    detach,
    job_of,
    lanes_study,
    make_runner,
    make_study,
    new_study_dir,
    option,
    simulated_time,
)

from orchestrator.execute import StudyExecution
from orchestrator.runners.slurm.client import SlurmClient
from orchestrator.runners.slurm.runner import job_record
from orchestrator.study import load_study
from orchestrator.study_dir import open_study_dir


def options_of(cluster: FakeCluster, job_id: str) -> list[str]:
    return dict(cluster.submitted)[job_id]


def node_of(cluster: FakeCluster, job_id: str) -> str | None:
    return option(options_of(cluster, job_id), "nodelist")


def waits_for(cluster: FakeCluster, job_id: str, other: str) -> bool:
    """Whether ``job_id`` starts only after ``other`` ended (its chain of afterany)."""
    seen = set()
    current = cluster.after(job_id)
    while current is not None and current not in seen:
        if current == other:
            return True
        seen.add(current)
        current = cluster.after(current)
    return False


def assert_one_job_at_a_time_per_node(cluster: FakeCluster, jobs: list[str]) -> None:
    """Every two of ``jobs`` pinned to one node are ordered by their dependencies."""
    for index, first in enumerate(jobs):
        for second in jobs[index + 1:]:
            if node_of(cluster, first) != node_of(cluster, second):
                continue
            assert waits_for(cluster, first, second) or waits_for(cluster, second, first), (
                f"jobs {first} and {second} are both on {node_of(cluster, first)} and neither "
                "waits for the other: Slurm may run them at once")


# -- a stop (Ctrl-C, a fatal refusal) throws away what another lane completed ------------------


def test_ctrl_c_keeps_a_run_another_lane_completed_meanwhile(tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = lanes_study(tmp_path, cycles=2)
    runner = make_runner(cluster, nodes=NODES)
    followed, other = manifest.runs[0].run_id, manifest.runs[2].run_id  # lane n1, lane n2
    reads = []

    def cluster_moves() -> None:
        reads.append(1)
        if len(reads) == 1:  # both lanes' first jobs start
            cluster.set(job_of(study_dir, followed), "RUNNING")
            cluster.set(job_of(study_dir, other), "RUNNING")
        if len(reads) == 3:  # n2's run ends with its result while llem follows n1's
            complete(cluster, study_dir, other)
        if len(reads) == 4:
            runner.request_stop()  # Ctrl-C

    cluster.on_squeue.append(cluster_moves)
    StudyExecution(study, study_dir, runner)._execute(runs, manifest)

    statuses = {entry.run_id: entry.status for entry in manifest.runs}
    assert (study_dir / other / "result.json").is_file()
    assert statuses[other] == "completed", (
        f"a run whose job completed with its result is recorded {statuses[other]}")


def test_a_fatal_refusal_in_one_lane_keeps_a_run_another_lane_completed(tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = lanes_study(tmp_path, cycles=2)
    refused, other = manifest.runs[0].run_id, manifest.runs[2].run_id  # lane n1, lane n2
    reads = []

    def cluster_moves() -> None:
        reads.append(1)
        if len(reads) == 1:  # n2's first run runs and completes; n1's job can never start
            cluster.set(job_of(study_dir, other), "RUNNING")
            complete(cluster, study_dir, other)
            cluster.jobs[job_of(study_dir, refused)]["state_reason"] = "PartitionTimeLimit"

    cluster.on_squeue.append(cluster_moves)
    StudyExecution(study, study_dir, make_runner(cluster, nodes=NODES))._execute(
        runs, manifest)

    statuses = {entry.run_id: entry.status for entry in manifest.runs}
    assert statuses[refused] == "failed"
    assert statuses[other] == "completed", (
        f"a run whose job completed with its result is recorded {statuses[other]}")


# -- nodes: [one node] -------------------------------------------------------------------------


def test_a_single_node_in_nodes_pins_the_jobs_of_an_attached_study(tmp_path):
    cluster = FakeCluster()
    study = make_study(tmp_path, cycles=1, slurm={"nodes": ["n1"]})
    study_dir, manifest, runs = new_study_dir(tmp_path, study)
    reads = []

    def cluster_moves() -> None:  # each job runs at once and completes
        reads.append(1)
        for job_id in cluster.alive():
            entry = next(e for e in manifest.runs if job_of(study_dir, e.run_id) == job_id)
            if cluster.jobs[job_id]["job_state"] == "RUNNING":
                complete(cluster, study_dir, entry.run_id)
            else:
                cluster.set(job_id, "RUNNING")

    cluster.on_squeue.append(cluster_moves)
    StudyExecution(study, study_dir, make_runner(cluster, nodes=["n1"]))._execute(
        runs, manifest)

    assert len(cluster.submitted) == 2
    assert [option(options, "nodelist") for _, options in cluster.submitted] == ["n1", "n1"], (
        "nodes: [n1] names the node the study runs on, but the jobs may go anywhere")


# -- an error while submitting an attached study's lanes ---------------------------------------


def run_jobs_to_completion(cluster: FakeCluster, study_dir: Path, manifest: Any) -> None:
    """A squeue hook: a pending job starts, a running one completes with its result."""

    def step() -> None:
        for job_id in sorted(cluster.alive()):
            entry = next((e for e in manifest.runs
                          if (study_dir / ".slurm" / f"{e.run_id}.json").is_file()
                          and job_of(study_dir, e.run_id) == job_id), None)
            if cluster.jobs[job_id]["job_state"] == "RUNNING" and entry is not None:
                complete(cluster, study_dir, entry.run_id)
            else:
                cluster.set(job_id, "RUNNING")

    cluster.on_squeue.append(step)


def test_an_sbatch_error_mid_submission_leaves_no_job_of_an_attached_study_unfollowed(tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = lanes_study(tmp_path, cycles=2)
    sbatch_calls = []

    def busy_controller(args: list[str], **kwargs: Any) -> Any:
        if args[0] == "sbatch":
            sbatch_calls.append(1)
            if len(sbatch_calls) == 3:  # a busy controller, once
                return subprocess.CompletedProcess(
                    args, 1, "", "sbatch: error: Batch job submission failed: Socket timed "
                    "out on send/recv operation\n")
        return cluster(args, **kwargs)

    runner = make_runner(cluster, nodes=NODES)
    runner.client = SlurmClient(run=busy_controller)
    runner.watcher.client = runner.client
    run_jobs_to_completion(cluster, study_dir, manifest)

    try:
        StudyExecution(study, study_dir, runner)._execute(runs, manifest)
    except Exception as error:  # llem run prints it and exits 2
        print(f"llem stopped: {error}")

    assert cluster.alive() == set(), (
        f"llem run (not --detach) ended with jobs {sorted(cluster.alive())} still on the "
        "cluster, unfollowed, their runs left 'running' in the manifest")


# -- resumes: the chain a new job joins ----------------------------------------------------------




def test_a_second_resume_chains_after_the_tail_of_the_lane_not_its_last_run_in_plan_order(
        tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = lanes_study(tmp_path, cycles=4)
    detach(study, study_dir, manifest, runs, cluster, nodes=NODES)
    # lane n1 holds cycles 1 and 3: plan positions 0, 1, 4, 5, chained in that order
    p0, p1, p4, p5 = (manifest.runs[i].run_id for i in (0, 1, 4, 5))
    assert {node_of(cluster, job_of(study_dir, r)) for r in (p0, p1, p4, p5)} == {"n1"}
    cluster.set(job_of(study_dir, p0), "FAILED", exit_code=1 << 8)
    cluster.set(job_of(study_dir, p1), "RUNNING")

    detach(study, study_dir, manifest, runs, cluster, nodes=NODES)  # resume --detach
    # p0 is resubmitted at the end of n1's chain, after p5
    assert cluster.after(job_of(study_dir, p0)) == job_of(study_dir, p5)
    complete(cluster, study_dir, p1)
    cluster.set(job_of(study_dir, p4), "CANCELLED", exit_code=15)  # scancel from outside
    cluster.set(job_of(study_dir, p5), "RUNNING")

    detach(study, study_dir, manifest, runs, cluster, nodes=NODES)  # resume --detach again

    on_n1 = [job for job in sorted(cluster.alive()) if node_of(cluster, job) == "n1"]
    assert job_of(study_dir, p4) in on_n1  # resubmitted
    assert_one_job_at_a_time_per_node(cluster, on_n1)


def test_a_resume_with_more_cycles_keeps_one_job_at_a_time_on_each_node(tmp_path):
    cluster = FakeCluster()
    study = make_study(tmp_path, cycles=1, slurm={"nodes": NODES})
    with open_study_dir(study, "slurm", output_root=tmp_path / "out") as opened:
        # one cycle, two lanes: the runs are dealt one by one, b1 to n1, b2 to n2
        detach(study, opened.path, opened.manifest, opened.runs, cluster, nodes=NODES)
        study_dir = opened.path
    for job_id in cluster.alive():
        cluster.set(job_id, "RUNNING")

    # llem run --resume DIR --cycles 2 --detach: whole cycles are now dealt to a lane
    topped_up = dataclasses.replace(
        study, execution=study.execution.model_copy(update={"n_cycles": 2}))
    with open_study_dir(topped_up, "slurm", resume_dir=study_dir, cycles=2) as opened:
        detach(topped_up, opened.path, opened.manifest, opened.runs, cluster, nodes=NODES)

    assert len(cluster.submitted) == 4
    assert_one_job_at_a_time_per_node(cluster, sorted(cluster.alive()))


def test_a_resume_with_the_nodes_listed_otherwise_keeps_one_job_at_a_time_on_each_node(
        tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = lanes_study(tmp_path, cycles=2)
    detach(study, study_dir, manifest, runs, cluster, nodes=NODES)  # cycle 1 on n1, 2 on n2
    cluster.set(job_of(study_dir, manifest.runs[0].run_id), "FAILED", exit_code=1 << 8)
    cluster.set(job_of(study_dir, manifest.runs[1].run_id), "RUNNING")
    cluster.set(job_of(study_dir, manifest.runs[2].run_id), "RUNNING")

    # llem run STUDY --resume DIR --detach, the study file now listing nodes: [n2, n1]
    swapped = make_study(tmp_path, cycles=2, slurm={"nodes": ["n2", "n1"]})
    detach(swapped, study_dir, manifest, runs, cluster, nodes=["n2", "n1"])

    assert len(cluster.submitted) == 5
    assert_one_job_at_a_time_per_node(cluster, sorted(cluster.alive()))



def test_ctrl_c_while_the_lanes_are_submitted_cancels_what_was_submitted(tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = lanes_study(tmp_path, cycles=2)
    runner = make_runner(cluster, nodes=NODES)
    sbatch_calls = []

    def ctrl_c_during_sbatch(args: list[str], **kwargs: Any) -> Any:
        if args[0] == "sbatch":
            sbatch_calls.append(1)
            if len(sbatch_calls) == 3:
                # Ctrl-C reaches the whole foreground process group: sbatch dies of SIGINT,
                # and llem's handler asks the runner to stop
                runner.request_stop()
                return subprocess.CompletedProcess(args, -2, "", "")
        return cluster(args, **kwargs)

    runner.client = SlurmClient(run=ctrl_c_during_sbatch)
    runner.watcher.client = runner.client

    try:
        StudyExecution(study, study_dir, runner)._execute(runs, manifest)
    except Exception as error:  # llem run prints it and exits 2, not 130
        print(f"llem stopped: {error}")

    assert cluster.alive() == set(), (
        f"Ctrl-C left jobs {sorted(cluster.alive())} on the cluster")
    # the runs submitted are cancelled and recorded interrupted; those not submitted yet
    # stay pending, as under every runner after a Ctrl-C
    statuses = [entry.status for entry in manifest.runs]
    assert statuses[:3] == ["interrupted"] * 3 and statuses[3] == "pending", statuses


# -- the one watcher: one squeue per poll_s, whatever the number of lanes ----------------------


def sweep_study(tmp_path: Path, configs: int, cycles: int) -> Any:
    """A study of ``configs`` configurations (pytorch batch sizes), on nodes n1 and n2."""
    path = tmp_path / "sweep.yaml"
    path.write_text("model: m\nbackend: pytorch\n"
                    f"execution: {{config_gap_s: 0, cycle_gap_s: 0, n_cycles: {cycles}, "
                    f"slurm: {{nodes: {json.dumps(NODES)}}}}}\n"
                    f"sweep:\n  pytorch.batch_size: {list(range(1, configs + 1))}\n")
    return load_study(path)




def most_calls_in_one_period(calls: list[float], period: float) -> int:
    return max(sum(1 for t in calls if start <= t < start + period) for start in calls)


def test_runs_another_lane_ended_meanwhile_are_read_without_a_burst_of_squeue_calls(tmp_path):
    cluster = FakeCluster()
    study = sweep_study(tmp_path, configs=20, cycles=2)  # cycle 1 on n1, cycle 2 on n2
    study_dir, manifest, runs = new_study_dir(tmp_path, study)
    runner = make_runner(cluster, nodes=NODES, poll_s=5)
    now = simulated_time(runner)
    started: dict[str, float] = {}
    calls: list[float] = []

    def cluster_moves() -> None:  # each job runs 60 s; one job at a time per node
        calls.append(now[0])
        for job_id, job in list(cluster.jobs.items()):
            if job["job_state"] == "RUNNING" and now[0] - started[job_id] >= 60:
                complete(cluster, study_dir, job["name"].removeprefix("llem-"))
        busy = {job["nodes"] for job in cluster.jobs.values() if job["job_state"] == "RUNNING"}
        for job_id, job in list(cluster.jobs.items()):
            after = cluster.after(job_id)
            ready = after is None or cluster.jobs[after]["job_state"] not in ("PENDING",
                                                                              "RUNNING")
            node = cluster.asked_node[job_id]
            if job["job_state"] == "PENDING" and ready and node not in busy:
                cluster.set(job_id, "RUNNING")
                started[job_id] = now[0]
                busy.add(node)

    cluster.on_squeue.append(cluster_moves)
    StudyExecution(study, study_dir, runner)._execute(runs, manifest)

    assert [entry.status for entry in manifest.runs] == ["completed"] * 40
    burst = most_calls_in_one_period(calls, 5.0)
    assert burst <= 3, (
        f"{burst} squeue calls within one poll_s of 5 s ({len(calls)} in "
        f"{now[0]:.0f} s): each run n2 finished while n1's were followed costs a call of its "
        "own, at once")


def test_a_resume_reads_the_ended_jobs_of_its_lanes_with_few_squeue_calls(tmp_path):
    cluster = FakeCluster()
    study = sweep_study(tmp_path, configs=25, cycles=2)
    study_dir, manifest, runs = new_study_dir(tmp_path, study)
    detach(study, study_dir, manifest, runs, cluster, nodes=NODES)
    for entry in manifest.runs:  # every job ended with its result ...
        complete(cluster, study_dir, entry.run_id)
    cluster.jobs.clear()  # ... long enough ago (MinJobAge) that squeue lists none of them
    calls: list[float] = []
    runner = make_runner(cluster, nodes=NODES, poll_s=5)
    now = simulated_time(runner)
    cluster.on_squeue.append(lambda: calls.append(now[0]))

    StudyExecution(study, study_dir, runner)._execute(runs, manifest)  # llem run --resume DIR

    assert [entry.status for entry in manifest.runs] == ["completed"] * 50
    assert len(calls) <= 10 and now[0] <= 60, (
        f"reading 50 ended runs took {len(calls)} squeue calls and {now[0]:.0f} s of waiting "
        "(6 calls and 6 s per run: a 1,000-run study takes 6,000 calls and 100 minutes)")


# -- a lane whose node fails ---------------------------------------------------------------------


def test_a_lane_whose_node_failed_does_not_hold_the_study_for_ever(tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = lanes_study(tmp_path, cycles=4)
    runner = make_runner(cluster, nodes=NODES, poll_s=5)
    now = simulated_time(runner)
    gave_up = []

    def cluster_moves() -> None:
        # n1 works: its jobs run and complete one after another. n2 fails under its first
        # job (NODE_FAIL); the jobs pinned to it then pend for the node, as Slurm holds them
        for entry in manifest.runs:
            job_id = job_of(study_dir, entry.run_id)
            job = cluster.jobs[job_id]
            if job["job_state"] not in ("PENDING", "RUNNING"):
                continue
            after = cluster.after(job_id)
            ready = after is None or cluster.jobs[after]["job_state"] not in ("PENDING",
                                                                              "RUNNING")
            if cluster.asked_node[job_id] == "n2":
                if job["job_state"] == "PENDING" and after is None:
                    cluster.set(job_id, "NODE_FAIL", exit_code=0)
                elif ready:
                    job["state_reason"] = "ReqNodeNotAvail,_UnavailableNodes:n2"
            elif job["job_state"] == "RUNNING":
                complete(cluster, study_dir, entry.run_id)
            elif ready:
                cluster.set(job_id, "RUNNING")
                break
        if now[0] > 86400 and not gave_up:  # a day later, the user gives up: Ctrl-C
            gave_up.append(now[0])
            runner.request_stop()

    cluster.on_squeue.append(cluster_moves)
    StudyExecution(study, study_dir, runner)._execute(runs, manifest)

    statuses = {entry.run_id: entry.status for entry in manifest.runs}
    assert not gave_up, (
        f"llem still waited after a day for n2's jobs, pending for a node that failed: "
        f"{statuses}")


# -- gaps on a resume ----------------------------------------------------------------------------


def test_a_resume_keeps_the_gap_after_the_lanes_run_that_just_ended(tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = lanes_study(tmp_path, cycles=2, gap=30.0)
    detach(study, study_dir, manifest, runs, cluster, nodes=NODES)
    first, second = manifest.runs[0].run_id, manifest.runs[1].run_id  # lane n1, in order
    complete(cluster, study_dir, first)
    cluster.set(job_of(study_dir, second), "FAILED", exit_code=1 << 8)  # ended just now
    for entry in manifest.runs[2:]:  # lane n2 done too
        complete(cluster, study_dir, entry.run_id)
    before = len(cluster.submitted)

    detach(study, study_dir, manifest, runs, cluster, nodes=NODES)  # llem run --resume --detach

    (resubmitted,) = cluster.submitted[before:]
    assert node_of(cluster, resubmitted[0]) == "n1"
    delay = json.loads(job_record(study_dir / second).read_text())["delay_s"]
    assert delay == 30.0, (
        f"the run resubmitted to n1 waits {delay} s, though n1's run before it ended just now "
        "(config_gap_s: 30); a resume without lanes waits the gap after a run it collected")
