"""A thin typed wrapper of Slurm's own commands: submit, watch, cancel, describe.

Slurm is driven through its CLI and its machine-readable output, as a cluster's users drive
it: ``sbatch --parsable`` (the job id), ``squeue --json`` (every job the controller still
holds, finished ones included for ``MinJobAge``), ``sacct --parsable2`` where accounting runs
(jobs the controller has forgotten), ``scancel``, ``scontrol ping`` and ``sinfo``. No daemon
of ours, no queue of ours: the controller is the only state.

``squeue --json`` changed shape across releases (OpenAPI v0.0.38 in 22.05: a state string and
an exit code as a wait status; v0.0.39 in 23.02: the wait status in a ``{set, infinite,
number}`` object; v0.0.40 from 23.11: a list of a base state and flags, and an exit code object
with ``return_code`` and ``signal``); all are read. ``squeue --json`` ignores ``--jobs`` in
22.05, so the one call lists every job and the watcher picks its own.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import RunnerError

Run = Callable[..., subprocess.CompletedProcess[str]]
COMMAND_TIMEOUT_S = 60.0
ACCOUNTING_OFF = "accounting storage is disabled"


class SlurmError(RunnerError):
    """A Slurm command failed or answered something this wrapper cannot read."""


@dataclass(frozen=True)
class JobInfo:
    """One job as the controller (or the accounting database) describes it.

    Attributes:
        job_id: the job id.
        state: its base state, upper case (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED,
            TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, ...).
        reason: the controller's reason (why pending, why it ended), "" for none.
        exit_code: the batch script's exit status, None when it did not exit by itself.
        signal: the signal that ended the batch script, None if none.
        node: the node(s) it ran on, "" while pending.
        restarts: how often the controller requeued it.
        partition: its partition.
        priority: its scheduling priority (higher first).
        source: squeue or sacct.
    """

    job_id: str
    state: str
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    node: str = ""
    restarts: int = 0
    partition: str = ""
    priority: int = 0
    comment: str = ""
    source: str = "squeue"


class SlurmClient:
    """Slurm's commands, run on the submitting host.

    Args:
        run: ``subprocess.run`` (tests inject a recorder).
        timeout_s: limit on one command; a controller that does not answer is an error.
    """

    def __init__(self, run: Run | None = None, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self._run = run or subprocess.run
        self.timeout_s = timeout_s
        self.calls = 0
        """Commands sent to the controller so far (the cost docs/runners.md states)."""

    def command(self, args: Sequence[str], *,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one Slurm command; a missing command or a failure is a ``SlurmError``."""
        self.calls += 1
        try:
            done = self._run(list(args), capture_output=True, text=True, timeout=self.timeout_s,
                             check=False)
        except FileNotFoundError as error:
            raise SlurmError(f"{args[0]} is not installed here",
                             fix="run llem on a host of the cluster (a login node) with "
                             "Slurm's client commands on PATH") from error
        except subprocess.TimeoutExpired as error:
            raise SlurmError(f"{' '.join(args[:2])} got no answer within {self.timeout_s:g} s",
                             fix="check the controller: scontrol ping") from error
        if check and done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise SlurmError(f"{' '.join(args[:2])} failed: "
                             f"{detail[-1] if detail else f'exit {done.returncode}'}",
                             fix="check the option or the controller it names")
        return done

    def submit(self, script: str, options: Sequence[str]) -> str:
        """Submit a batch script (its text, on stdin) and return the job id."""
        self.calls += 1
        try:
            done = self._run(["sbatch", "--parsable", *options], input=script,
                             capture_output=True, text=True, timeout=self.timeout_s, check=False)
        except FileNotFoundError as error:
            raise SlurmError("sbatch is not installed here",
                             fix="run llem on a host of the cluster (a login node)") from error
        if done.returncode != 0:
            detail = done.stderr.strip().splitlines()
            raise SlurmError(f"sbatch refused the job: {detail[-1] if detail else done.returncode}",
                             fix="check execution.slurm (partition, account, qos, gpus_per_run, "
                             "mem, sbatch_options) against sinfo and sacctmgr")
        # --parsable prints "jobid" or "jobid;cluster"
        return done.stdout.strip().split(";")[0]

    def jobs_and_queue(self, job_ids: Iterable[str]) -> tuple[dict[str, JobInfo],
                                                              dict[str, int]]:
        """The controller's view of these jobs, and the queue positions of the pending ones.

        One ``squeue`` call. Only jobs the controller still holds are listed. A pending job's
        position is 1 + the pending jobs of its partition with a higher priority.
        """
        wanted = set(job_ids)
        if not wanted:
            return {}, {}
        listed = self._squeue()
        found = {info.job_id: info for info in listed if info.job_id in wanted}
        pending = [info for info in listed if info.state == "PENDING"]
        positions = {
            info.job_id: 1 + sum(1 for other in pending if other.partition == info.partition
                                 and _ahead(other, info))
            for info in found.values() if info.state == "PENDING"}
        return found, positions

    def live_jobs(self) -> list[JobInfo]:
        """Every job the controller lists that has not ended (one ``squeue`` call)."""
        return [job for job in self._squeue() if job.state in LIVE_STATES]

    def _squeue(self) -> list[JobInfo]:
        """Every job the controller holds, finished ones included (``MinJobAge``)."""
        done = self.command(["squeue", "--json"])
        try:
            return [job_from_squeue(job) for job in json.loads(done.stdout).get("jobs", [])]
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as error:
            raise SlurmError("squeue --json printed nothing this wrapper can read",
                             fix="use Slurm 21.08 or later (squeue --json)") from error

    def accounting(self) -> bool:
        """Whether the cluster keeps accounting (``sacct`` answers)."""
        try:
            done = self.command(["sacct", "--noheader", "--parsable2", "-X", "-j", "0"],
                                check=False)
        except SlurmError:  # no sacct here at all
            return False
        return done.returncode == 0 and ACCOUNTING_OFF not in (done.stderr + done.stdout)

    def finished(self, job_ids: Iterable[str]) -> dict[str, JobInfo]:
        """Jobs the controller has forgotten, from the accounting database (one sacct call)."""
        ids = sorted(set(job_ids))
        if not ids:
            return {}
        done = self.command(["sacct", "--noheader", "--parsable2", "-X", "--duplicates",
                             "--format=JobIDRaw,State,ExitCode,NodeList,Reason",
                             "-j", ",".join(ids)])
        found: dict[str, JobInfo] = {}
        for line in done.stdout.splitlines():
            info = job_from_sacct(line)
            if info is not None and info.job_id in ids:
                found[info.job_id] = info  # the last record of a requeued job is its latest
        return found

    def cancel(self, job_ids: Iterable[str], signal: str | None = None) -> None:
        """``scancel`` these jobs (or send them ``signal``); an ended job is no error."""
        ids = sorted(set(job_ids))
        if ids:
            args = ["scancel", *(["--signal", signal, "--full"] if signal else []), *ids]
            self.command(args, check=False)

    def ping(self) -> str:
        """The controller's answer to ``scontrol ping`` (raises when it is down)."""
        done = self.command(["scontrol", "ping"], check=False)
        text = done.stdout.strip()
        # "Slurmctld(primary) at a is UP" (a backup's line may say DOWN: one UP suffices)
        if done.returncode != 0 or not any(line.rstrip().endswith("is UP")
                                           for line in text.splitlines()):
            raise SlurmError(f"the Slurm controller does not answer: {text or done.stderr.strip()}",
                             fix="start slurmctld, or run llem on a host of the cluster")
        return text

    def node_states(self, partition: str | None = None) -> dict[str, str]:
        """The nodes of ``partition`` (None: the default one) and their states.

        As ``sinfo --Node`` lists them: ``idle``, ``alloc``, ``down*``, ``drained``, ...
        """
        where = [f"--partition={partition}"] if partition else []
        done = self.command(["sinfo", "--noheader", "--Node", "--format=%N|%P|%T", *where])
        states = {}
        for line in done.stdout.splitlines():
            node, listed, state = ([*line.strip().split("|"), "", ""])[:3]
            if node and (partition or listed.endswith("*")):
                states[node] = state
        return states

    def partitions(self) -> list[PartitionInfo]:
        """Partitions with their nodes, CPUs, memory and GPUs (``sinfo``, one line each)."""
        done = self.command(["sinfo", "--noheader", "--format=%R|%D|%c|%m|%G|%a|%l|%P"])
        return [partition for line in done.stdout.splitlines()
                if (partition := PartitionInfo.parse(line)) is not None]


@dataclass(frozen=True)
class PartitionInfo:
    """One partition as ``sinfo`` lists it (nodes of one kind per line)."""

    name: str
    nodes: int
    cpus_per_node: str
    memory_mb: str
    gres: str
    available: str
    time_limit: str
    default: bool = False

    @classmethod
    def parse(cls, line: str) -> PartitionInfo | None:
        """One ``sinfo --format=%R|%D|%c|%m|%G|%a|%l|%P`` line; None for anything else.

        ``%P`` marks the default partition with ``*``; a line without it (``%R|...|%l``)
        names no default.
        """
        parts = line.strip().split("|")
        if len(parts) not in (7, 8) or not parts[1].isdigit():
            return None
        return cls(name=parts[0], nodes=int(parts[1]), cpus_per_node=parts[2],
                   memory_mb=parts[3], gres=parts[4], available=parts[5],
                   time_limit=parts[6], default=len(parts) == 8 and parts[7].endswith("*"))

    @property
    def gpus_per_node(self) -> str:
        """The gpu entries of its gres (e.g. ``gpu:h100:8``), or ``none``."""
        gpus = [entry for entry in self.gres.split(",") if entry.startswith("gpu")]
        return ",".join(gpus) or "none"


def job_from_squeue(job: dict[str, Any]) -> JobInfo:
    """One entry of ``squeue --json``, whichever OpenAPI version wrote it."""
    state = job.get("job_state", "")
    if isinstance(state, list):  # v0.0.40+ (23.11): the base state first, then flags
        state = _state_with_flags(state)
    exit_code, signal = _exit(job.get("exit_code"))
    return JobInfo(
        job_id=str(_number(job.get("job_id"))),
        state=str(state).upper(),
        reason="" if job.get("state_reason") in (None, "None") else str(job["state_reason"]),
        exit_code=exit_code,
        signal=signal,
        node=str(job.get("nodes") or ""),
        restarts=int(_number(job.get("restart_cnt")) or 0),
        partition=str(job.get("partition") or ""),
        priority=int(_number(job.get("priority")) or 0),
        comment=str(job.get("comment") or ""),
    )


def job_from_sacct(line: str) -> JobInfo | None:
    """One ``JobIDRaw|State|ExitCode|NodeList|Reason`` line of ``sacct --parsable2``."""
    parts = line.strip().split("|")
    if len(parts) < 4 or not parts[0]:
        return None
    state = parts[1].split()[0] if parts[1] else ""  # "CANCELLED by 1000"
    code, _, signal = parts[2].partition(":")
    signal_number = int(signal) if signal.isdigit() and int(signal) else None
    return JobInfo(job_id=parts[0], state=state.upper().rstrip("+"),
                   reason=parts[4] if len(parts) > 4 and parts[4] != "None" else "",
                   exit_code=None if signal_number else (int(code) if code.isdigit() else None),
                   signal=signal_number, node=parts[3], source="sacct")


FLAG_STATES = ("COMPLETING", "CONFIGURING", "REQUEUED", "RESIZING", "STAGE_OUT",
               "SIGNALING", "STOPPED", "UPDATE_DB", "POWER_UP_NODE", "REQUEUE_HOLD",
               "REQUEUE_FED", "RESV_DEL_HOLD")
"""Flags that the string form (``job_state_string``, as 22.05 prints it) shows instead of the
base state: a RUNNING job whose nodes boot reads CONFIGURING (waiting, untimed)."""


def _state_with_flags(states: list[Any]) -> str:
    """The one state the string form would print for a v0.0.40+ list of base state and flags."""
    names = [str(state).upper() for state in states]
    for flag in FLAG_STATES:
        if flag in names[1:]:
            return flag
    return names[0] if names else ""


LIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED",
                         "REQUEUED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"})


def _ahead(other: JobInfo, job: JobInfo) -> bool:
    """Whether ``other`` starts before ``job``: a higher priority, or the same and earlier."""
    if other.priority != job.priority:
        return other.priority > job.priority
    return _id_number(other.job_id) < _id_number(job.job_id)


def _id_number(job_id: str) -> int:
    head = job_id.split("_")[0]
    return int(head) if head.isdigit() else 0


def _number(value: Any) -> Any:
    """A plain value, or the ``number`` of an OpenAPI ``{"set": ..., "number": ...}``."""
    if isinstance(value, dict):
        return value.get("number") if value.get("set", True) else None
    return value


def _exit(value: Any) -> tuple[int | None, int | None]:
    """(exit status, signal) of a job's exit code in either OpenAPI shape."""
    if isinstance(value, dict) and "number" in value:  # v0.0.39 (23.02): the wait status
        value = _number(value)
    elif isinstance(value, dict):  # v0.0.40+: {"status": [...], "return_code": n, "signal": ...}
        signal = value.get("signal", {})
        signal_id = _number(signal.get("id")) if isinstance(signal, dict) else None
        if signal_id:
            return None, int(signal_id)
        code = _number(value.get("return_code"))
        return (int(code) if code is not None else None), None
    if value is None:
        return None, None
    status = int(value)  # v0.0.38: a wait status
    if status & 0x7F:
        if status > 0xFFFF:  # no wait status
            return None, None
        return None, status & 0x7F  # slurmctld's SIG_OOM (253) reads as 125: no real signal
    return status >> 8, None
