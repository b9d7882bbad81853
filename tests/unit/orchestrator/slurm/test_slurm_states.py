"""How a run's Slurm job ended becomes the run's outcome: the table of states.py, row by row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.runners.base import EndKind, RunOutcome
from orchestrator.runners.slurm.client import JobInfo, job_from_sacct, job_from_squeue
from orchestrator.runners.slurm.states import classify_job, ended, waiting

HARNESS_LOG = ("run directory: /shared/study/001_pytorch_c1\n"
               "error: the model ./models/tiny does not exist\n")
"""The harness's own lines (``harness/__main__.py``: ``error: <message>``, then its exit)."""


def classify(tmp_path: Path, job: JobInfo | None, log: str = "", end: EndKind | None = None,
             **kwargs: Any) -> RunOutcome:
    log_path = tmp_path / "container.log"
    log_path.write_text(log)
    options = {"timeout_s": 3600.0, "stop_note": "", "limit": "65", **kwargs}
    return classify_job(end, job, log_path, **options)


def test_completed_exit_0_is_ok(tmp_path, canned):
    outcome = classify(tmp_path, job_from_squeue(canned.JOBS_22_05["completed"]),
                       "run directory: /x\n/x/result.json\n")
    assert (outcome.end, outcome.exit_code) == ("ok", 0)


def test_failed_nonzero_is_the_harness_error_line(tmp_path, canned):
    job = job_from_squeue(canned.JOBS_22_05["exit_3"])
    outcome = classify(tmp_path, job, HARNESS_LOG)
    assert (outcome.end, outcome.exit_code) == ("error", 3)
    assert outcome.message == "the model ./models/tiny does not exist (Slurm job 15 on vm)"
    assert outcome.log_tail == HARNESS_LOG.splitlines()


def test_completed_nonzero_is_an_error_too(tmp_path):
    job = JobInfo("7", "COMPLETED", exit_code=1, node="n1")
    outcome = classify(tmp_path, job, HARNESS_LOG)
    assert outcome.end == "error"
    assert outcome.message.startswith("the model ./models/tiny does not exist")


def test_an_error_without_an_error_line_names_the_status(tmp_path):
    outcome = classify(tmp_path, JobInfo("7", "FAILED", exit_code=2, node="n1"), "")
    assert outcome.end == "error"
    assert outcome.message == "the harness exited with status 2 (Slurm job 7 on n1)"


def test_exit_130_is_killed(tmp_path):
    job = JobInfo("8", "FAILED", exit_code=130, node="n1")
    outcome = classify(tmp_path, job, "error: interrupted\n")
    assert (outcome.end, outcome.exit_code) == ("killed", 130)
    assert "stopped from outside" in outcome.message


def test_a_signal_without_memory_lines_is_killed(tmp_path, canned):
    # the harness had started (its first line); 22.05 still calls the end JobLaunchFailure
    outcome = classify(tmp_path, job_from_squeue(canned.JOBS_22_05["sigkill"]),
                       "run directory: /shared/study/001_pytorch_c1\n")
    assert outcome.end == "killed"
    assert "SIGKILL" in outcome.message


def test_timeout_names_the_jobs_limit(tmp_path, canned):
    job = job_from_squeue(canned.JOBS_22_05["timeout"])
    outcome = classify(tmp_path, job, canned.TIME_LIMIT_LOG, limit="65")
    assert outcome.end == "timeout"
    assert "time limit (65)" in outcome.message
    assert "execution.slurm.time_limit" in outcome.message
    assert "Slurm job 30 on vm" in outcome.message


def test_deadline_is_a_timeout(tmp_path):
    outcome = classify(tmp_path, JobInfo("9", "DEADLINE", node="n1"), limit="1-00:00:00")
    assert outcome.end == "timeout" and "(1-00:00:00)" in outcome.message


def test_out_of_memory_is_oom(tmp_path):
    outcome = classify(tmp_path, JobInfo("10", "OUT_OF_MEMORY", exit_code=0, node="n1"))
    assert outcome.end == "oom"
    assert "execution.slurm.mem" in outcome.message and "OUT_OF_MEMORY" in outcome.message


def test_out_of_memory_with_slurms_oom_status_is_oom(tmp_path, canned):
    # slurmctld records a cgroup OOM as the wait status SIG_OOM (253: "0:125" in sacct) and the
    # state OUT_OF_MEMORY (src/slurmctld/job_mgr.c); 125 is no signal Python knows.
    raw = dict(canned.JOBS_22_05["exit_3"], job_state="OUT_OF_MEMORY",
               state_reason="OutOfMemory", exit_code=253)
    job = job_from_squeue(raw)
    assert (job.exit_code, job.signal) == (None, 125)
    assert classify(tmp_path, job, "").end == "oom"
    sacct = job_from_sacct("15|OUT_OF_MEMORY|0:125|vm|OutOfMemory")
    assert sacct is not None and classify(tmp_path, sacct, "").end == "oom"


def test_failed_with_slurmstepds_memory_kill_in_the_log_is_oom(tmp_path, canned):
    # The real job: --mem=30M, OverMemoryKill; Slurm reports it FAILED, killed by SIGKILL.
    job = job_from_squeue(canned.JOBS_22_05["memory_killed"])
    assert (job.state, job.signal) == ("FAILED", 9)
    outcome = classify(tmp_path, job, "run directory: /x\n" + canned.MEMORY_KILL_LOG)
    assert outcome.end == "oom"
    assert "Slurm job 22 on vm" in outcome.message


def test_docker_steps_oom_line_is_oom(tmp_path):
    # What the exec docker script writes when the container's --memory stopped it.
    log = "llem: the container ran out of memory (OOMKilled, its --memory limit)\n"
    outcome = classify(tmp_path, JobInfo("11", "FAILED", exit_code=137, node="n1"), log)
    assert outcome.end == "oom"


def test_a_completed_job_is_never_oom_whatever_its_log_says(tmp_path):
    log = "warning: retrying after out of memory\n"
    outcome = classify(tmp_path, JobInfo("12", "COMPLETED", exit_code=0, node="n1"), log)
    assert outcome.end == "ok"


def test_a_cuda_out_of_memory_error_is_the_harness_error_not_slurms_memory_limit(tmp_path):
    line = ("error: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 "
            "has a total capacity of 79.10 GiB of which 1.02 GiB is free.")
    outcome = classify(tmp_path, JobInfo("13", "FAILED", exit_code=1, node="n1"), line + "\n")
    assert outcome.end == "error"


def test_the_cgroup_oom_line_of_slurm_23_is_oom(tmp_path):
    # SchedMD/slurm src/plugins/task/cgroup/task_cgroup_memory.c: tag slurm-22-05-8-1 writes
    # "Detected %lu oom-kill event(s) in %ps. Some of your processes may have been killed by
    # the cgroup out-of-memory handler."; tag slurm-23-02-8-1 and later write "Detected %lu
    # oom_kill event%s in %ps. Some of the step tasks have been OOM Killed."
    log = ("slurmstepd: error: Detected 1 oom_kill event in StepId=5.batch. Some of the step "
           "tasks have been OOM Killed.\n")
    outcome = classify(tmp_path, JobInfo("5", "FAILED", signal=9, node="n1"), log)
    assert outcome.end == "oom"


@pytest.mark.parametrize("state", ["NODE_FAIL", "BOOT_FAIL"])
def test_node_failure(tmp_path, state):
    outcome = classify(tmp_path, JobInfo("14", state, reason="NodeDown", node="n3"))
    assert outcome.end == "node_failure"
    assert f"({state}, NodeDown)" in outcome.message and "--resume" in outcome.message


def test_preempted(tmp_path):
    outcome = classify(tmp_path, JobInfo("15", "PREEMPTED", node="n3"))
    assert outcome.end == "preempted" and "--resume" in outcome.message


def test_cancelled_from_outside_is_killed(tmp_path, canned):
    outcome = classify(tmp_path, job_from_squeue(canned.JOBS_22_05["cancelled"]), "")
    assert outcome.end == "killed"
    assert "cancelled from outside" in outcome.message and "Slurm job 21" in outcome.message


def test_interrupted_by_llem(tmp_path, canned):
    job = job_from_squeue(canned.JOBS_22_05["cancelled"])
    outcome = classify(tmp_path, job, "error: interrupted\n", end="interrupted")
    assert outcome.end == "interrupted"


def test_llems_own_timeout_and_stall_name_the_cancelled_job(tmp_path):
    job = JobInfo("16", "CANCELLED", signal=15, node="n2")
    timeout = classify(tmp_path, job, end="timeout", timeout_s=600.0)
    assert timeout.end == "timeout"
    assert timeout.message == ("exceeded its timeout of 600 s; job cancelled "
                               "(Slurm job 16 on n2)")
    stalled = classify(tmp_path, job, end="stalled", stop_note="no event for 300 s")
    assert (stalled.end, stalled.message) == ("stalled", "no event for 300 s; job cancelled "
                                                         "(Slurm job 16 on n2)")


def test_an_unknown_end_is_a_runner_error(tmp_path):
    outcome = classify(tmp_path, None, "partial output\n")
    assert outcome.end == "runner_error"
    assert "--resume" in outcome.message and outcome.log_tail == ["partial output"]


def test_any_other_final_state_is_an_error_naming_it(tmp_path):
    outcome = classify(tmp_path, JobInfo("17", "SPECIAL_EXIT", reason="x", node="n1"))
    assert outcome.end == "error" and "SPECIAL_EXIT, x" in outcome.message


@pytest.mark.parametrize(("state", "is_waiting", "is_ended"), [
    ("PENDING", True, False), ("CONFIGURING", True, False), ("SUSPENDED", True, False),
    ("RUNNING", False, False), ("COMPLETING", False, False),
    ("COMPLETED", False, True), ("FAILED", False, True), ("TIMEOUT", False, True),
    ("OUT_OF_MEMORY", False, True), ("NODE_FAIL", False, True)])
def test_waiting_and_ended(state, is_waiting, is_ended):
    job = JobInfo("1", state)
    assert (waiting(job), ended(job)) == (is_waiting, is_ended)


def test_a_job_that_never_started_is_slurms_launch_failure(tmp_path, canned):
    # no log at all: Slurm could not open it or enter the working directory on the node
    outcome = classify(tmp_path, job_from_squeue(canned.JOBS_22_05["sigkill"]), "")
    assert outcome.end == "error"
    assert "JobLaunchFailure" in outcome.message and "nodes share" in outcome.message
