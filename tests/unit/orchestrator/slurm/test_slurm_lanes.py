"""Lanes: one study on several nodes at once (``execution.slurm.nodes`` / ``lanes``).

The study's runs are dealt out over the lanes (whole cycles where there are enough), every run
is submitted up front as a chain of jobs per lane (``--dependency=afterany`` on the lane's
previous job, ``--nodelist`` of the lane's node), and ``llem run`` then follows them in the
plan's order. ``FakeCluster`` plays Slurm in memory; a squeue hook moves the jobs as a cluster
with one job per node at a time would.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from llem_testkit.results import fake_result
from llem_testkit.slurm_cluster import (
    NODES,
    FakeCluster,
    job_of,
    lanes_study,
    make_runner,
    make_study,
    new_study_dir,
    option,
)
from pydantic import ValidationError

from harness.errors import ConfigError
from harness.io import write_json
from harness.schema.reading import read_model
from harness.schema.run_spec import RunSpec
from orchestrator.execute import StudyExecution
from orchestrator.runners.slurm.client import SlurmClient
from orchestrator.runners.slurm.preflight import setting_problems, slurm_problems
from orchestrator.runners.slurm.runner import SlurmRunner, job_record
from orchestrator.schedule import lanes, plan
from orchestrator.study.execution import SlurmConfig


def run_like_a_cluster(cluster: FakeCluster, study_dir: Path,
                       fail: set[str] | None = None) -> list[tuple[str, str]]:
    """A squeue hook that runs the jobs as a cluster does; returns the (job, node) start order.

    At each squeue: a RUNNING job ends (COMPLETED with a result, or FAILED for runs in
    ``fail``); a PENDING job whose dependency has ended starts, if its node is free.
    """
    started: list[tuple[str, str]] = []

    def step() -> None:
        by_name = {job["name"]: job_id for job_id, job in cluster.jobs.items()}
        for job_id, job in list(cluster.jobs.items()):
            if job["job_state"] != "RUNNING":
                continue
            run_id = job["name"].removeprefix("llem-")
            if run_id in (fail or set()):
                cluster.set(job_id, "FAILED", exit_code=1 << 8)
                continue
            run_dir = study_dir / run_id
            spec = read_model(run_dir / "experiment.json", RunSpec)
            write_json(run_dir / "result.json", fake_result(spec, energy_j=100.0))
            cluster.set(job_id, "COMPLETED")
        busy = {job["nodes"] for job in cluster.jobs.values() if job["job_state"] == "RUNNING"}
        for job_id, job in list(cluster.jobs.items()):
            after = cluster.after(job_id)
            ready = after is None or cluster.jobs[after]["job_state"] not in (
                "PENDING", "RUNNING")
            node = cluster.asked_node.get(job_id, "vm")
            if job["job_state"] == "PENDING" and ready and node not in busy:
                cluster.set(job_id, "RUNNING")
                busy.add(node)
                started.append((job_id, node))
        assert by_name  # the hook only ever sees the study's own jobs

    cluster.on_squeue.append(step)
    return started


# -- dealing runs out --------------------------------------------------------------------------


def test_whole_cycles_go_to_a_lane_when_there_are_enough(tmp_path):
    runs = make_runs(tmp_path, cycles=4)

    assert lanes(runs, 2) == [(run.cycle - 1) % 2 for run in runs]
    assert lanes(runs, 1) == [0] * len(runs)


def test_with_fewer_cycles_than_lanes_runs_are_dealt_one_by_one(tmp_path):
    runs = make_runs(tmp_path, cycles=1)

    assert lanes(runs, 2) == [0, 1]
    assert lanes(runs, 3) == [0, 1]


def make_runs(tmp_path: Path, cycles: int) -> list[Any]:
    return plan(make_study(tmp_path, cycles=cycles))


# -- submission --------------------------------------------------------------------------------


def test_each_lane_is_a_chain_of_jobs_pinned_to_its_node(tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = lanes_study(tmp_path, cycles=2)

    StudyExecution(study, study_dir, make_runner(cluster, nodes=NODES),
                   detach=True)._run_pending(runs, manifest)

    jobs = {entry.run_id: dict(cluster.submitted)[job_of(study_dir, entry.run_id)]
            for entry in manifest.runs}
    for run, entry in zip(runs, manifest.runs, strict=True):
        assert option(jobs[entry.run_id], "nodelist") == NODES[run.cycle - 1]
    first, second = ([entry.run_id for run, entry in zip(runs, manifest.runs, strict=True)
                      if run.cycle == cycle] for cycle in (1, 2))
    for lane in (first, second):
        assert option(jobs[lane[0]], "dependency") is None  # each lane starts at once
        assert option(jobs[lane[1]], "dependency") == f"afterany:{job_of(study_dir, lane[0])}"


def test_the_gap_is_kept_between_the_runs_of_a_lane_not_between_lanes(tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = lanes_study(tmp_path, cycles=2, gap=30.0)

    StudyExecution(study, study_dir, make_runner(cluster, nodes=NODES),
                   detach=True)._run_pending(runs, manifest)

    delays = [json.loads(job_record(study_dir / entry.run_id).read_text())["delay_s"]
              for entry in manifest.runs]
    # plan: (b1, c1) (b2, c1) (b1, c2) (b2, c2); lanes: cycle 1 on n1, cycle 2 on n2
    assert delays == [0.0, 30.0, 0.0, 30.0]


def test_lanes_without_nodes_chain_without_pinning(tmp_path):
    cluster = FakeCluster()
    study = make_study(tmp_path, cycles=2, slurm={"lanes": 2})
    study_dir, manifest, runs = new_study_dir(tmp_path, study)

    StudyExecution(study, study_dir, make_runner(cluster, lanes=2),
                   detach=True)._run_pending(runs, manifest)

    options = [dict(cluster.submitted)[job_of(study_dir, e.run_id)] for e in manifest.runs]
    assert all(option(o, "nodelist") is None for o in options)
    assert [option(o, "dependency") is None for o in options] == [True, False, True, False]


# -- following ---------------------------------------------------------------------------------


def test_an_attached_study_runs_its_lanes_side_by_side_and_records_every_run(tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = lanes_study(tmp_path, cycles=2)
    started = run_like_a_cluster(cluster, study_dir)

    StudyExecution(study, study_dir, make_runner(cluster, nodes=NODES))._run_pending(
        runs, manifest)

    assert [entry.status for entry in manifest.runs] == ["completed"] * 4
    assert len(cluster.submitted) == 4
    # both lanes' first jobs ran before either lane's second: the nodes worked at once
    assert {node for _, node in started[:2]} == set(NODES)


def test_a_failed_run_in_one_lane_does_not_stop_the_other(tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = lanes_study(tmp_path, cycles=2)
    failing = manifest.runs[0].run_id
    run_like_a_cluster(cluster, study_dir, fail={failing})

    StudyExecution(study, study_dir, make_runner(cluster, nodes=NODES))._run_pending(
        runs, manifest)

    statuses = {entry.run_id: entry.status for entry in manifest.runs}
    assert statuses.pop(failing) == "failed"
    assert set(statuses.values()) == {"completed"}


def test_ctrl_c_while_following_cancels_every_lane(tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = lanes_study(tmp_path, cycles=2)
    runner = make_runner(cluster, nodes=NODES)
    calls = []

    def ctrl_c() -> None:
        calls.append(1)
        if len(calls) == 3:
            runner.request_stop()

    cluster.on_squeue.append(ctrl_c)
    StudyExecution(study, study_dir, runner)._execute(runs, manifest)

    assert cluster.alive() == set(), f"jobs left on the cluster: {cluster.alive()}"
    assert {entry.status for entry in manifest.runs} == {"interrupted"}


def test_a_resume_chains_new_jobs_after_the_live_job_of_their_own_lane(tmp_path):
    cluster = FakeCluster()
    study, study_dir, manifest, runs = lanes_study(tmp_path, cycles=2)
    StudyExecution(study, study_dir, make_runner(cluster, nodes=NODES),
                   detach=True)._run_pending(runs, manifest)
    by_cycle = {run.cycle: [] for run in runs}
    for run, entry in zip(runs, manifest.runs, strict=True):
        by_cycle[run.cycle].append(entry)
    # lane n1: its first run failed, its second still runs; lane n2: both still queued
    cluster.set(job_of(study_dir, by_cycle[1][0].run_id), "FAILED", exit_code=1 << 8)
    live_n1 = job_of(study_dir, by_cycle[1][1].run_id)
    cluster.set(live_n1, "RUNNING")
    before = len(cluster.submitted)

    StudyExecution(study, study_dir, make_runner(cluster, nodes=NODES),
                   detach=True)._run_pending(runs, manifest)

    (resubmitted,) = cluster.submitted[before:]
    assert option(resubmitted[1], "nodelist") == "n1"
    assert option(resubmitted[1], "dependency") == f"afterany:{live_n1}"


@pytest.mark.parametrize("slurm", [{}, {"nodes": NODES}])
def test_a_cool_down_read_on_this_host_is_refused_for_runs_on_the_cluster(tmp_path, slurm):
    # It would watch the submitting host's GPUs (or none), not the node's, and record them.
    study = make_study(tmp_path, cycles=2, slurm=slurm or None)
    study.execution.gap_until_cool = True
    study_dir, _, _ = new_study_dir(tmp_path, study)

    with pytest.raises(ConfigError, match="gap_until_cool watches this host's GPUs") as raised:
        StudyExecution(study, study_dir, make_runner(FakeCluster(), **slurm))
    assert "config_gap_s" in (raised.value.fix or "")
    assert StudyExecution(study, study_dir, make_runner(FakeCluster(), **slurm),
                          no_gaps=True).cool_down is None


# -- settings and preflight --------------------------------------------------------------------


def test_a_node_named_twice_or_lanes_that_disagree_with_nodes_are_refused():
    with pytest.raises(ValidationError, match="names a node twice"):
        SlurmConfig(nodes=["n1", "n1"])
    with pytest.raises(ValidationError, match="one lane per node"):
        SlurmConfig(nodes=["n1", "n2"], lanes=3)
    assert SlurmConfig(nodes=["n1", "n2"]).lane_count == 2
    assert SlurmConfig(lanes=3).lane_count == 3
    assert SlurmConfig().lane_count == 1


@pytest.mark.parametrize("pinning", ["--nodelist=n1", "-w", "-wn1", "--nodel=n1"])
def test_nodes_and_a_nodelist_in_sbatch_options_are_refused(pinning):
    runner = make_runner(FakeCluster(), nodes=NODES, sbatch_options=[pinning])

    (problem,) = setting_problems(runner, {"pytorch"}, None)

    assert "execution.slurm.nodes already places each job" in problem


def test_a_nodelist_in_sbatch_options_alone_is_still_allowed():
    runner = make_runner(FakeCluster(), sbatch_options=["--nodelist=n1"])

    assert setting_problems(runner, {"pytorch"}, None) == []


def test_nodes_the_partition_does_not_have_or_that_are_down_are_refused(tmp_path):
    cluster = FakeCluster()
    answers = {"scontrol": "Slurmctld(primary) at ctl is UP\n",
               "sinfo": "debug|2|1|2048|(null)|up|infinite|debug*\n"}

    def sinfo_and_ping(args: list[str], **kwargs: Any) -> Any:
        if args[0] == "sinfo" and "--Node" in args:
            return subprocess.CompletedProcess(args, 0, "n1|debug*|idle\nn2|debug*|down*\n", "")
        if args[0] in answers:
            return subprocess.CompletedProcess(args, 0, answers[args[0]], "")
        return cluster(args, **kwargs)

    runner = SlurmRunner(SlurmConfig(exec="local", gpus_per_run=0, nodes=["n1", "n9"]),
                         client=SlurmClient(run=sinfo_and_ping))

    (problem,) = slurm_problems(runner, {"pytorch"}, None)

    assert "n9, not a node of the default partition" in problem
    assert "n1, n2" in problem

    runner.slurm = SlurmConfig(exec="local", gpus_per_run=0, nodes=["n1", "n2"])
    (problem,) = slurm_problems(runner, {"pytorch"}, None)
    assert "nodes names n2 (down*)" in problem and "leave it out of nodes" in problem
