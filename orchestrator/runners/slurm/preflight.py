"""What the Slurm runner checks before a study's first job (each problem with its fix).

The controller answers; the partition exists; the study's settings fit the runner (no host GPU
indices, a GPU for a GPU-only backend, no sbatch option that overrides one llem sets, an
interpreter or SIF file that exists); and the output directory is on storage the nodes share:
a probe job on the study's partition reads a file written here and writes one back.
"""

from __future__ import annotations

import secrets
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.errors import LlemError
from harness.io import write_text
from harness.schema.catalog import BY_NAME
from orchestrator.runners.slurm import script as scripts
from orchestrator.runners.slurm.client import JobInfo, SlurmClient
from orchestrator.runners.slurm.states import ended
from orchestrator.study.execution import SlurmConfig


class SlurmRunner(Protocol):
    """What the checks read of the Slurm runner (``runner.SlurmRunner``)."""

    slurm: SlurmConfig
    client: SlurmClient
    image_override: str | None
    output_root: Path | None

UNAVAILABLE_STATES = ("down", "drain", "fail", "inval", "maint", "future")
"""sinfo node states (``%T``, lower case, a ``*`` or ``~`` may follow) in which no job starts."""
PROBE_WAIT_S = 120.0
"""How long the storage probe's job may take (queue included) before the check gives up."""
PROBE_NAME = ".llem-storage-probe"


def slurm_problems(runner: SlurmRunner, backends: set[str],
                   gpus: list[int] | None) -> list[str]:
    """Everything that stops ``runner`` from running these backends' runs on the cluster."""
    settings = runner.slurm
    problems = setting_problems(runner, backends, gpus)
    try:
        runner.client.ping()
        names = {partition.name for partition in runner.client.partitions()}
    except LlemError as error:
        return [*problems, str(error)]
    if settings.partition and settings.partition not in names:
        problems.append(f"execution.slurm.partition '{settings.partition}' is not a partition "
                        f"of this cluster (sinfo lists {', '.join(sorted(names)) or 'none'})\n"
                        "  fix: name one of them, or leave it out for the default")
    elif settings.nodes:
        try:
            known = runner.client.node_states(settings.partition)
        except LlemError as error:
            return [*problems, str(error)]
        unknown = [node for node in settings.nodes if node not in known]
        if unknown:
            where = f"partition '{settings.partition}'" if settings.partition else \
                "the default partition"
            problems.append(f"execution.slurm.nodes names {', '.join(unknown)}, not a node of "
                            f"{where} (sinfo lists {', '.join(sorted(known)) or 'none'})\n"
                            "  fix: name nodes of the partition, or set partition to theirs")
        down = [f"{node} ({known[node]})" for node in settings.nodes
                if known.get(node, "").startswith(UNAVAILABLE_STATES)]
        if down:
            problems.append(f"execution.slurm.nodes names {', '.join(down)}: its lane's jobs "
                            "would wait for it, untimed\n  fix: leave it out of nodes until "
                            "it is back (scontrol update nodename=NODE state=resume)")
    if not problems and runner.output_root is not None:
        problems += probe_storage(runner.client, runner.output_root, runner).problems
    return problems


def setting_problems(runner: SlurmRunner, backends: set[str],
                     gpus: list[int] | None) -> list[str]:
    """The study's settings against the runner, without asking the cluster."""
    settings = runner.slurm
    problems = []
    if gpus:
        problems.append(f"execution.gpus (or --gpus) is {gpus}: on Slurm the job's allocation "
                        "decides which GPUs a run gets\n  fix: remove it and set "
                        "execution.slurm.gpus_per_run")
    gpu_only = sorted(b for b in backends if BY_NAME[b].gpu_only)
    if gpu_only and settings.gpus_per_run == 0:
        problems.append(f"backend {', '.join(gpu_only)} needs a GPU, but "
                        "execution.slurm.gpus_per_run is 0\n  fix: set it to 1 or more")
    for option in settings.sbatch_options:
        if settings.nodes and scripts.pins_nodes(option):
            problems.append(f"execution.slurm.sbatch_options has {option!r}, but "
                            "execution.slurm.nodes already places each job on its lane's node"
                            "\n  fix: leave one of them out")
        own = scripts.own_option(option)
        if own is not None:
            problems.append(f"execution.slurm.sbatch_options has {option!r}, which llem sets "
                            f"itself ({own})\n  fix: use the matching execution.slurm setting "
                            "(partition, account, qos, time_limit, gpus_per_run, cpus_per_run, "
                            "mem) or leave it out")
    if settings.exec in ("apptainer", "pyxis"):
        for path in (runner.output_root, Path.cwd()):
            if path is not None and ("," in str(path) or ":" in str(path)):
                problems.append(f"exec {settings.exec} cannot mount {path}: its bind list "
                                "separates mounts with ',' and source from target with ':', "
                                "and cannot quote either\n  fix: run from, and write to, a "
                                "directory without ',' or ':' (or use exec docker or local)")
    if settings.exec == "pyxis" and not (runner.image_override or settings.image):
        problems.append("exec pyxis needs the image as enroot can read it: a squashfs file or "
                        "a registry reference, not the name of an image in a node's Docker\n"
                        "  fix: enroot import -o llem-vllm.sqsh dockerd://llem/vllm:latest "
                        "(docs/runners.md), then set execution.slurm.image to the file")
    if settings.exec == "apptainer" and not (settings.sif and Path(settings.sif).is_file()):
        problems.append(f"exec apptainer needs the image as a SIF file: execution.slurm.sif is "
                        f"{settings.sif or 'not set'}\n  fix: apptainer build llem-cpu.sif "
                        "docker-daemon://llem/cpu:latest (docs/runners.md), then set "
                        "execution.slurm.sif to it")
    return problems


@dataclass(frozen=True)
class StorageProbe:
    """What the shared-storage probe found.

    Attributes:
        problems: the problem (with its fix) when a job could not read and write the
            directory; empty otherwise.
        checked: False when the probe job did not run within ``PROBE_WAIT_S`` (or could not
            be submitted): nothing is known.
        node: the node the probe ran on.
    """

    problems: list[str]
    checked: bool
    node: str = ""


def probe_storage(client: SlurmClient, directory: Path, runner: SlurmRunner) -> StorageProbe:
    """Whether a job can read a file written here and write one back (shared storage).

    A probe job that has not run within ``PROBE_WAIT_S`` (a busy queue) is cancelled and the
    check is reported as not done, not as failed: it is the first run's job that then finds out.
    """
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    probe = directory / f"{PROBE_NAME}-{token}"
    seen = probe.with_suffix(".seen")
    write_text(probe, token)
    settings = runner.slurm
    text = f"#!/bin/sh\ncat {shlex.quote(str(probe))} > {shlex.quote(str(seen))}\n"
    options = ["--job-name=llem-storage-probe", "--output=/dev/null", "--time=1",
               "--nodes=1", "--ntasks=1", "--no-requeue", f"--chdir={directory}"]
    for flag, value in (("--partition", settings.partition), ("--account", settings.account),
                        ("--qos", settings.qos)):
        if value:
            options.append(f"{flag}={value}")
    try:
        job_id = client.submit(text, options + list(settings.sbatch_options))
        job = _wait(client, job_id)
        if job is None or not ended(job):
            client.cancel([job_id])
            return StorageProbe([], checked=False)  # a busy queue: the first job tells
        if _read(seen) == token:
            return StorageProbe([], checked=True, node=job.node)
        problem = (f"a job on node {job.node or '?'} could not read and write {directory} "
                   f"(probe job {job_id} ended {job.state}): the output directory must be on "
                   "storage the submitting host and the nodes share\n  fix: --output on the "
                   "shared file system (NFS, Lustre, GPFS...), the same path on every node")
        return StorageProbe([problem], checked=True, node=job.node)
    except LlemError as error:
        return StorageProbe([str(error)], checked=False)
    finally:
        probe.unlink(missing_ok=True)
        seen.unlink(missing_ok=True)


def _wait(client: SlurmClient, job_id: str) -> JobInfo | None:
    deadline = time.monotonic() + PROBE_WAIT_S
    job = None
    while time.monotonic() < deadline:
        found, _ = client.jobs_and_queue([job_id])
        job = found.get(job_id)
        if job is not None and ended(job):
            return job
        time.sleep(1.0)
    return job


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
