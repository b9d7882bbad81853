"""``llem doctor``'s Slurm report: controller, partitions, accounting, exec mode, storage.

Reported where Slurm's client commands are on PATH or the runner is slurm; a problem only where
the runner is slurm. The storage probe (a real job) runs only then too (docs/runners.md).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import get_args

from harness.errors import LlemError
from orchestrator.doctor import Check
from orchestrator.runners import RUNNERS
from orchestrator.runners.slurm import preflight
from orchestrator.runners.slurm.client import ACCOUNTING_OFF, PartitionInfo, SlurmClient
from orchestrator.runners.slurm.runner import SlurmRunner
from orchestrator.study.execution import SlurmConfig, SlurmExec

LOGIN_NODE_FIX = ("run llem on a host of the cluster (a login node) with Slurm's client "
                  "commands on PATH, or choose another runner")


def runner_check(runner: str, source: str) -> Check:
    """The runner the report is for, and where that choice came from."""
    return Check("runner", runner in RUNNERS, f"{runner} (from {source})",
                 f"use --runner {' or '.join(RUNNERS)}")


def slurm_checks(output: Path, runner: str, client: SlurmClient | None = None,
                 installed: bool | None = None) -> list[Check]:
    """The cluster as the Slurm runner would find it, with the default ``execution.slurm``.

    Args:
        output: the output root, where the storage probe writes (created if missing).
        runner: the resolved runner; only ``slurm`` turns what is missing into problems and
            submits the storage probe job.
        client: Slurm's commands (tests inject one with a recording ``run``).
        installed: whether Slurm's client commands are here (default: ``sbatch`` on PATH).

    Returns:
        One line when Slurm is absent and not needed, else the controller, each partition,
        accounting, the exec mode and the shared-storage check.
    """
    needed = runner == "slurm"
    if installed is None:
        installed = shutil.which("sbatch") is not None
    if not installed:
        return [Check("slurm", not needed, "not installed here (sbatch is not on PATH)"
                      + ("" if needed else "; only --runner slurm needs it"), LOGIN_NODE_FIX)]
    client = client or SlurmClient()
    settings = SlurmConfig()
    exec_line = _exec_mode(settings)
    try:
        answer = client.ping()
    except LlemError as error:
        down = Check("slurm controller", not needed,
                     error.message + ("" if needed else "; only --runner slurm needs it"),
                     error.fix or LOGIN_NODE_FIX)
        return [down, exec_line, _not_probed("the controller does not answer")]
    checks = [Check("slurm controller", True, answer)]
    try:
        partitions = client.partitions()
    except LlemError as error:
        return [*checks, Check("slurm partitions", not needed, error.message, error.fix or ""),
                exec_line, _not_probed("sinfo failed")]
    checks += [_partition(partition) for partition in partitions]
    usable = any(partition.available == "up" for partition in partitions)
    if not usable:
        checks.append(Check("slurm partitions", not needed,
                            "no partition is up" if partitions else "sinfo lists none",
                            "ask the cluster's administrators (sinfo shows each partition)"))
    try:
        checks.append(_accounting(client))
    except LlemError as error:  # accounting is optional: llem works without it
        checks.append(Check("slurm accounting", True, f"unknown: {error.message}"))
    checks.append(exec_line)
    if not needed:
        checks.append(_not_probed(f"the runner is {runner}; llem doctor --runner slurm submits "
                                  "a probe job"))
    elif not usable:
        checks.append(_not_probed("no partition is up"))
    else:
        checks.append(_storage(client, output, SlurmRunner(slurm=settings, client=client)))
    return checks


def _partition(partition: PartitionInfo) -> Check:
    return Check(f"slurm partition {partition.name}", True,
                 f"{partition.nodes} node(s), {partition.cpus_per_node} CPUs/node, "
                 f"{partition.memory_mb} MB/node, GPUs/node: {partition.gpus_per_node}, "
                 f"{partition.available}, time limit {partition.time_limit}")


def _accounting(client: SlurmClient) -> Check:
    if client.accounting():
        return Check("slurm accounting", True, "yes: llem reads jobs the controller has "
                     "forgotten from sacct")
    done = client.command(["scontrol", "show", "config"], check=False)
    found = re.search(r"^MinJobAge\s*=\s*(.+)$", done.stdout, re.MULTILINE)
    age = found.group(1).strip() if found else "300 sec by default"
    return Check("slurm accounting", True,
                 f"no ({ACCOUNTING_OFF}): llem reads a finished job from the controller only, "
                 f"which keeps it for MinJobAge ({age}) after its end; a job not seen ending "
                 "by then is recorded with an unknown end")


def _exec_mode(settings: SlurmConfig) -> Check:
    others = ", ".join(mode for mode in get_args(SlurmExec) if mode != settings.exec)
    return Check("slurm exec mode", True,
                 f"{settings.exec} (the default of execution.slurm.exec; a study may choose "
                 f"{others})")


def _not_probed(why: str) -> Check:
    return Check("slurm shared storage", True, f"not probed: {why}")


def _storage(client: SlurmClient, output: Path, runner: SlurmRunner) -> Check:
    """The preflight's probe job on the output root (ok, problem, or not checked in time)."""
    probe = preflight.probe_storage(client, output, runner)
    directory = output.resolve()
    if probe.problems:
        message, _, fix = probe.problems[0].partition("\n  fix: ")
        return Check("slurm shared storage", False, message, fix)
    if not probe.checked:
        return Check("slurm shared storage", True,
                     f"{directory}: not checked, the probe job did not run within "
                     f"{preflight.PROBE_WAIT_S:g} s (a busy queue); the first run's job finds out")
    return Check("slurm shared storage", True,
                 f"{directory}: a job read a file written here and wrote one back")
