"""Slurm's job states, and how the end of a run's job becomes llem's run outcome.

The table (docs/runners.md, "Slurm"):

=============================  ==============================================================
Slurm state                    llem
=============================  ==============================================================
PENDING, CONFIGURING, ...      waiting (queue position and reason shown), not yet timed
RUNNING, COMPLETING, ...       running: the wait loop's timeout, stall and load limits apply
COMPLETED, exit 0              ok (then result.json is validated as for every runner)
COMPLETED or FAILED, exit != 0 as the harness's exit reads under any runner (error, killed)
TIMEOUT, DEADLINE              timeout (Slurm's time limit)
OUT_OF_MEMORY                  oom; also a job Slurm's memory enforcement killed where the
                               state says FAILED/CANCELLED (its log says it exceeded the limit)
NODE_FAIL, BOOT_FAIL           node_failure: redone on --resume
PREEMPTED                      preempted: redone on --resume
CANCELLED (not by llem)        killed: cancelled from outside
CANCELLED by llem              interrupted (Ctrl-C), timeout or stalled (llem's own limits)
=============================  ==============================================================
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.runners.base import EndKind, ProcessEnd, RunOutcome, classify_end, log_tail
from orchestrator.runners.slurm.client import JobInfo

WAITING = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                     "RESIZING", "SUSPENDED", "STOPPED", "RESV_DEL_HOLD", "POWER_UP_NODE"})
RUNNING = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "UPDATE_DB"})
MEMORY_KILL_LINES = ("exceeded job memory limit", "exceeded memory limit", "oom-kill event",
                     "oom_kill event", "oom killed", "llem: the container ran out of memory")
"""What slurmstepd (jobacct_gather's OverMemoryKill; the cgroup's OOM event: 22.05 "oom-kill
event(s)", 23.02+ "oom_kill event ... OOM Killed") or the job script's docker step writes to
the job's log when memory ended it. Not the harness's own errors: a CUDA "out of memory" is the
GPU's, an ``error`` as under every runner, not the job's memory limit."""


LAUNCH_FAILURES = frozenset({"JobLaunchFailure", "launch_failed_requeued_held"})
"""Reasons of a job Slurm could not start (its log or working directory), before any harness.
Slurm 22.05 gives JobLaunchFailure to a batch script killed by a signal too: only a job that
left no log at all counts as not started."""


def ended(job: JobInfo) -> bool:
    """Whether the job has reached a final state."""
    return job.state not in WAITING and job.state not in RUNNING


def waiting(job: JobInfo) -> bool:
    """Whether the job waits for its resources (or was held)."""
    return job.state in WAITING


def classify_job(end: EndKind | None, job: JobInfo | None, log_path: Path, *,
                 timeout_s: float | None, stop_note: str, limit: str) -> RunOutcome:
    """Name how a run's job ended.

    Args:
        end: what llem's wait loop did to it (timeout, stalled, interrupted), None if the job
            ended by itself.
        job: the job's final state, None when neither the controller nor accounting knows it
            any more.
        log_path: the job's log (its stdout and stderr: the harness's output).
        timeout_s: the run's timeout (s).
        stop_note: the wait loop's account of a stall or a phase limit.
        limit: the job's own time limit, as submitted.
    """
    where = _where(job)
    if end is not None:  # llem stopped it: its own account, as under every runner
        code = job.exit_code if job is not None else None
        outcome = classify_end(end, ProcessEnd(code), log_path, timeout_s=timeout_s,
                               stop_note=stop_note, after_stop=f"; job cancelled{where}")
        return outcome
    tail = log_tail(log_path)
    if job is None:
        return RunOutcome("runner_error", None, "the job's end is unknown: the controller no "
                          "longer lists it and the cluster keeps no accounting (sacct); rerun "
                          "it with --resume", tail)
    if job.state in ("TIMEOUT", "DEADLINE"):
        return RunOutcome("timeout", job.exit_code, f"Slurm stopped the job at its time limit "
                          f"({limit}){where}: raise execution.slurm.time_limit", tail,
                          scheduler_cause=True)
    if job.state == "OUT_OF_MEMORY" or (job.state != "COMPLETED" and _memory_kill(tail)):
        return RunOutcome("oom", job.exit_code, f"ran out of memory{where} ({job.state}): "
                          "raise execution.slurm.mem", tail, scheduler_cause=True)
    if job.state in ("NODE_FAIL", "BOOT_FAIL"):
        return RunOutcome("node_failure", job.exit_code, f"the node failed{where} ({job.state}"
                          f"{_reason(job)}): the run is redone on --resume", tail,
                          scheduler_cause=True)
    if job.state == "PREEMPTED":
        return RunOutcome("preempted", job.exit_code, f"the job was preempted{where}: the run "
                          "is redone on --resume", tail, scheduler_cause=True)
    if job.state in ("CANCELLED", "REVOKED"):
        return RunOutcome("killed", job.exit_code, f"the job was cancelled from outside "
                          f"(scancel, or an administrator){where}", tail, scheduler_cause=True)
    if job.state == "FAILED" and job.reason in LAUNCH_FAILURES and not tail:
        return RunOutcome("error", job.exit_code, f"Slurm could not start the job{where} "
                          f"({job.reason}): the working directory or the run directory is "
                          "missing or not writable on the node (the study must be on storage "
                          "the nodes share, at the same path)", tail, scheduler_cause=True)
    if job.state in ("COMPLETED", "FAILED"):
        outcome = classify_end(None, ProcessEnd(job.exit_code, job.signal), log_path,
                               timeout_s=timeout_s)
        if outcome.end != "ok":
            outcome.message += where
        return outcome
    return RunOutcome("error", job.exit_code, f"the job ended {job.state}{_reason(job)}{where}",
                      tail)


def _memory_kill(tail: list[str]) -> bool:
    text = "\n".join(tail).lower()
    return any(line in text for line in MEMORY_KILL_LINES)


def _where(job: JobInfo | None) -> str:
    if job is None:
        return ""
    return f" (Slurm job {job.job_id}" + (f" on {job.node})" if job.node else ")")


def _reason(job: JobInfo) -> str:
    return f", {job.reason}" if job.reason else ""
