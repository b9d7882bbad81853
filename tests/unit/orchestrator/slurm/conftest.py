"""Canned Slurm outputs and a recorder of Slurm commands for the Slurm runner's unit tests.

Every canned output below reproduces what a real Slurm prints. The 22.05 ones were captured on
a one-node Slurm 22.05.8 cluster (``tests/slurm/single-node.sh``) and trimmed to the fields the
client reads (plus a few for context); the shapes of later releases are taken from Slurm's own
source, cited where they are built.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

# --- Slurm 22.05.8, captured ------------------------------------------------------------------

SBATCH_PARSABLE = "13\n"
"""``sbatch --parsable --mem=50M --wrap 'sleep 1'`` (stdout; a cluster of a federation adds
``;<cluster>``)."""

SBATCH_BAD_PARTITION = ("sbatch: error: invalid partition specified: nope\n"
                        "sbatch: error: Batch job submission failed: Invalid partition name "
                        "specified\n")
"""``sbatch --parsable --partition=nope ...``: stderr, exit status 1."""

SACCT_DISABLED = "Slurm accounting storage is disabled\n"
"""``sacct --noheader --parsable2 -X -j 0`` with AccountingStorageType=accounting_storage/none:
stderr, exit status 1."""

SINFO = "debug|1|2|23081|(null)|up|infinite|debug*\n"
"""``sinfo --noheader --format='%R|%D|%c|%m|%G|%a|%l|%P'`` on a node without gres (``%P``
marks the default partition with ``*``)."""

SCONTROL_PING = "Slurmctld(primary) at vm is UP\n"

SQUEUE_META_22_05 = {"plugin": {"type": "openapi/v0.0.38", "name": "Slurm OpenAPI v0.0.38"},
                     "Slurm": {"version": {"major": 22, "micro": 8, "minor": 5},
                               "release": "22.05.8"}}


def _job_22_05(job_id: int, state: str, reason: str, exit_code: int, nodes: str,
               priority: int, partition: str = "debug") -> dict[str, Any]:
    """One ``squeue --json`` job of Slurm 22.05 (OpenAPI v0.0.38), trimmed."""
    return {"job_id": job_id, "name": "wrap", "job_state": state, "state_reason": reason,
            "exit_code": exit_code, "derived_exit_code": 0, "nodes": nodes,
            "batch_host": nodes, "partition": partition, "priority": priority,
            "restart_cnt": 0, "requeue": True, "time_limit": None, "user_name": "root"}


# ``--wrap``: exit 0, exit 3, ``kill -9 $$``, exit 143, a running ``sleep`` scancelled, a job
# killed by OverMemoryKill (--mem=30M), ``--time=1`` run out; and, captured while pending,
# one waiting for a CPU, one held (--hold) and one not yet eligible (--begin=now+3600).
JOBS_22_05 = {
    "completed": _job_22_05(14, "COMPLETED", "None", 0, "vm", 4294901746),
    "exit_3": _job_22_05(15, "FAILED", "NonZeroExitCode", 768, "vm", 4294901745),
    "sigkill": _job_22_05(16, "FAILED", "JobLaunchFailure", 9, "vm", 4294901744),
    "exit_143": _job_22_05(17, "FAILED", "NonZeroExitCode", 36608, "vm", 4294901743),
    "cancelled": _job_22_05(21, "CANCELLED", "None", 15, "vm", 4294901740),
    "memory_killed": _job_22_05(22, "FAILED", "JobLaunchFailure", 9, "vm", 4294901739),
    "timeout": _job_22_05(30, "TIMEOUT", "TimeLimit", 15, "vm", 4294901731),
    "pending": _job_22_05(117, "PENDING", "Resources", 0, "", 4294901743),
    "held": _job_22_05(119, "PENDING", "JobHeldUser", 0, "", 0),
    "begin": _job_22_05(120, "PENDING", "BeginTime", 0, "", 4294901741),
}

MEMORY_KILL_LOG = (
    "slurmstepd-vm: error: StepId=22.batch exceeded memory limit (434675712 > 31457280), "
    "being killed\n"
    "slurmstepd-vm: error: *** JOB 22 ON vm CANCELLED AT 2026-12-01T02:05:19 ***\n"
    "slurmstepd-vm: error: Exceeded job memory limit\n")
"""The log of the job killed by jobacct_gather's OverMemoryKill (state FAILED, signal 9)."""

TIME_LIMIT_LOG = ("slurmstepd-vm: error: *** JOB 30 ON vm CANCELLED AT 2026-12-01T02:07:38 "
                  "DUE TO TIME LIMIT ***\n")

# --- Slurm 23.11+ (OpenAPI v0.0.40 and later), from Slurm's source ----------------------------
# SchedMD/slurm, src/plugins/data_parser/v0.0.40/parsers.c (tag slurm-23-11-0-1):
# - JOB_INFO: "job_state" is a bit-flag array (PARSER_FLAG_ARRAY(JOB_STATE): the base state
#   first, then flags such as CONFIGURING or COMPLETING); "job_id" UINT32 (a plain number);
#   "priority" UINT32_NO_VAL and the like dump as {"set", "infinite", "number"}
#   (DUMP_FUNC(UINT32_NO_VAL), PARSER_ARRAY(UINT32_NO_VAL_STRUCT)); "restart_cnt" UINT16.
# - "exit_code" is PROCESS_EXIT_CODE: DUMP_FUNC(PROCESS_EXIT_CODE) turns the wait status into
#   PROCESS_EXIT_CODE_VERBOSE {"status": [...], "return_code": UINT32_NO_VAL,
#   "signal": {"id": UINT16_NO_VAL, "name": SIGNAL}}: an exit sets return_code and leaves
#   signal unset (NO_VAL16: id {"set": false, ...}, name ""); a signal sets signal (name as
#   sig_num2name writes it, e.g. "KILL") and leaves return_code unset (NO_VAL).


def no_val(number: int | None) -> dict[str, Any]:
    """A ``*_NO_VAL`` number as OpenAPI v0.0.39+ dumps it (None: NO_VAL, i.e. unset)."""
    if number is None:
        return {"set": False, "infinite": False, "number": 0}
    return {"set": True, "infinite": False, "number": number}


def exit_code_v40(return_code: int | None = None, signal: int | None = None,
                  signal_name: str = "") -> dict[str, Any]:
    """``exit_code`` of OpenAPI v0.0.40+ for an exit status or a signal."""
    status = "SIGNALED" if signal is not None else "SUCCESS" if return_code == 0 else "ERROR"
    return {"status": [status], "return_code": no_val(return_code),
            "signal": {"id": no_val(signal), "name": signal_name}}


def job_v40(job_id: int, states: list[str], reason: str, exit_code: dict[str, Any],
            nodes: str, priority: int, partition: str = "gpu") -> dict[str, Any]:
    """One ``squeue --json`` job of Slurm 23.11+ (OpenAPI v0.0.40), trimmed."""
    return {"job_id": job_id, "name": "llem-001_pytorch_c1", "job_state": states,
            "state_reason": reason, "exit_code": exit_code, "nodes": nodes,
            "partition": partition, "priority": no_val(priority), "restart_cnt": 0}


SQUEUE_META_23_11 = {"plugin": {"type": "", "name": "", "data_parser": "data_parser/v0.0.40",
                                "accounting_storage": ""},
                     "slurm": {"version": {"major": "23", "micro": "0", "minor": "11"},
                               "release": "23.11.0", "cluster": "hpc"}}


def squeue_json(jobs: Sequence[dict[str, Any]], meta: dict[str, Any] | None = None) -> str:
    """The stdout of ``squeue --json`` listing ``jobs``."""
    return json.dumps({"meta": meta or SQUEUE_META_22_05, "errors": [],
                       "jobs": [copy.deepcopy(job) for job in jobs]}, indent=3)


# --- The recorder -----------------------------------------------------------------------------

Answer = Callable[[list[str], dict[str, Any]], "subprocess.CompletedProcess[str] | None"]


class SlurmRecorder:
    """Stands in for ``subprocess.run`` under ``SlurmClient(run=...)``.

    Records every command and answers it with the first handler whose command name matches
    (``sbatch``, ``squeue``, ``sacct``, ...); a command nobody answers fails the test.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, Any]]] = []
        self.handlers: dict[str, Answer] = {}

    def on(self, command: str, stdout: str = "", stderr: str = "", returncode: int = 0) -> None:
        """Answer every ``command`` with this output."""
        self.handlers[command] = lambda args, kwargs: subprocess.CompletedProcess(
            args, returncode, stdout, stderr)

    def answer(self, command: str, handler: Answer) -> None:
        """Answer ``command`` with ``handler(args, kwargs)``."""
        self.handlers[command] = handler

    def __call__(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(args), kwargs))
        handler = self.handlers.get(args[0])
        if handler is None:
            raise AssertionError(f"unexpected command {args}")
        done = handler(list(args), kwargs)
        assert done is not None
        return done

    def commands(self, name: str) -> list[list[str]]:
        """The argument lists of every ``name`` command sent so far."""
        return [args for args, _ in self.calls if args[0] == name]


@pytest.fixture
def recorder() -> SlurmRecorder:
    """A fresh recorder with no answers."""
    return SlurmRecorder()


@pytest.fixture
def canned() -> SimpleNamespace:
    """The canned outputs and shape builders above, for the tests of this directory."""
    return SimpleNamespace(
        SBATCH_PARSABLE=SBATCH_PARSABLE, SBATCH_BAD_PARTITION=SBATCH_BAD_PARTITION,
        SACCT_DISABLED=SACCT_DISABLED, SINFO=SINFO, SCONTROL_PING=SCONTROL_PING,
        JOBS_22_05=copy.deepcopy(JOBS_22_05), MEMORY_KILL_LOG=MEMORY_KILL_LOG,
        TIME_LIMIT_LOG=TIME_LIMIT_LOG, SQUEUE_META_23_11=SQUEUE_META_23_11,
        no_val=no_val, exit_code_v40=exit_code_v40, job_v40=job_v40, squeue_json=squeue_json)
