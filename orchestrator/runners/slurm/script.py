"""The batch script of one run and the ``sbatch`` options it is submitted with.

A pure function of the run, the study's ``execution.slurm`` and the submitting host's settings,
as the Docker runner's container plan is (unit-tested). The script is kept beside the run
directories (``<study>/.slurm/<run-id>.sh``) so that what ran can be read afterwards.

Every exec mode runs the same ``python -m harness run <run-dir>/experiment.json``; they differ
only in what wraps it (docs/runners.md, "Slurm"):

- ``local``: the interpreter named by ``execution.slurm.python``, on the node itself.
- ``docker``: the Docker runner's container plan (user, read-only root, dropped capabilities,
  mounts at the host's paths, no network for a local model) as ``docker run`` arguments, with the
  job's GPUs (``SLURM_JOB_GPUS``) as the container's. The script stops the container on the
  SIGTERM Slurm sends (scancel, time limit) and removes it on every way out it can trap.
- ``apptainer``: ``apptainer exec --nv`` of the image converted to SIF, the same mounts.
- ``pyxis``: ``srun --container-image`` of the image, the same mounts.

The harness measures the GPUs it is shown: Slurm's gres plugin sets ``CUDA_VISIBLE_DEVICES`` to
the job's GPUs for ``local``, ``apptainer`` and ``pyxis``; ``docker`` hands the same GPUs to
the container; the harness maps what it sees to NVML by UUID.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path

from harness.energy.rapl import ROOT_ENV
from harness.environment import SLURM_VARIABLES
from harness.errors import ConfigError
from orchestrator.runners.docker.plan import RAPL_TARGET, ContainerPlan
from orchestrator.study.execution import SlurmConfig

MARGIN_MIN = 5
"""Minutes added to execution.timeout_s for the job's own limit: llem's timeout stops first."""
OWN_OPTIONS = ("--parsable", "--job-name", "--output", "--error", "--chdir", "--time",
               "--partition", "--account", "--qos", "--gres", "--gpus", "--gpus-per-node",
               "--gpus-per-task", "--gpus-per-socket", "--cpus-per-task", "--cpus-per-gpu",
               "--mem", "--mem-per-cpu", "--mem-per-gpu", "--requeue", "--no-requeue",
               "--export", "--comment", "--array", "--wrap", "--nodes", "--ntasks",
               "--dependency", "--hold", "-J", "-o", "-e", "-D", "-t", "-p", "-A", "-q", "-c",
               "-G", "-N", "-n", "-d", "-H", "-a")
"""sbatch options llem sets from the study (or must not be changed under it)."""
HARNESS_ENV = {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
LOG_NAME = "container.log"


@dataclass(frozen=True)
class JobRequest:
    """What one run's job asks of Slurm, before it becomes sbatch options."""

    name: str
    comment: str
    log: Path
    workdir: Path
    time_limit: str
    gpus: int
    node: str | None = None
    """The node the job must run on (``--nodelist``): its lane's, with ``nodes``."""


def time_limit(slurm: SlurmConfig, timeout_s: float | None, delay_s: float = 0.0) -> str:
    """``execution.slurm.time_limit``, else the run's timeout in minutes plus a margin.

    A detached job's gap (``delay_s``, waited in its allocation) is added to the timeout.
    """
    if slurm.time_limit:
        return slurm.time_limit
    if timeout_s is None:
        return "UNLIMITED"
    return str(math.ceil((timeout_s + delay_s) / 60) + MARGIN_MIN)


def delayed(text: str, delay_s: float) -> str:
    """The job script waiting ``delay_s`` first (a detached study's gap, in the allocation)."""
    if delay_s <= 0:
        return text
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line == "set -u") + 1
    lines.insert(at, f"sleep {delay_s:g}  # the study's gap before this run")
    return "\n".join(lines) + "\n"


def sbatch_options(slurm: SlurmConfig, job: JobRequest) -> list[str]:
    """The command-line options of ``sbatch`` for one run's job.

    ``--no-requeue``: Slurm never reruns the job behind llem's back (a node failure ends it as
    NODE_FAIL, recorded, and ``--resume`` redoes the run), so no run directory is written by two
    attempts. ``--export=NONE``: the job starts from the node's environment, not the submitting
    shell's; the script sets what the harness needs.
    """
    log = str(job.log).replace("%", "%%")  # sbatch expands %j, %x, ... in --output
    options = [f"--job-name={job.name}", f"--comment={job.comment}", f"--output={log}",
               f"--chdir={job.workdir}", f"--time={job.time_limit}", "--no-requeue",
               "--export=NONE", "--nodes=1", "--ntasks=1"]
    for flag, value in (("--partition", slurm.partition), ("--account", slurm.account),
                        ("--qos", slurm.qos), ("--cpus-per-task", slurm.cpus_per_run),
                        ("--mem", slurm.mem)):
        if value is not None:
            options.append(f"{flag}={value}")
    if job.gpus:
        options.append(f"--gres=gpu:{job.gpus}")
    if job.node is not None:
        options.append(f"--nodelist={job.node}")
    return options + list(slurm.sbatch_options)


def pins_nodes(option: str) -> bool:
    """Whether the sbatch argument ``option`` names the job's nodes (``--nodelist``, ``-w``)."""
    flag = option.split("=", 1)[0]
    if flag.startswith("--"):
        return len(flag) > 3 and "--nodelist".startswith(flag)
    return flag.startswith("-w")


def own_option(option: str) -> str | None:
    """The llem-set option that ``option`` (one sbatch argument) would override, if any."""
    flag = option.split("=", 1)[0]
    for own in OWN_OPTIONS:
        if flag == own or (len(own) == 2 and flag.startswith(own) and not flag.startswith("--")):
            return own
    if flag.startswith("--") and len(flag) > 3:  # sbatch takes unambiguous abbreviations
        for own in OWN_OPTIONS:
            if own.startswith("--") and own.startswith(flag):
                return own
    return None


def header(run_id: str, study: str | None) -> list[str]:
    """The first lines of every job script: interpreter, what it runs, strict variables."""
    return ["#!/bin/bash",
            f"# llem run {run_id} of study {study or '?'}: written by llem's Slurm runner",
            "set -u"]


def _exports(extra: dict[str, str]) -> list[str]:
    env = {**HARNESS_ENV, **extra}
    return [f"export {key}={shlex.quote(value)}" for key, value in sorted(env.items())]


def local_script(run_dir: Path, run_id: str, study: str | None, python: str, cwd: Path,
                 host_env: dict[str, str]) -> str:
    """``exec local``: the harness under the node's (shared) interpreter.

    ``exec``: the harness is the batch step's process, so Slurm's SIGTERM (scancel, time limit)
    reaches it and it finalises its files as under any other runner.
    """
    lines = [*header(run_id, study), f"cd {shlex.quote(str(cwd))}", *_exports(host_env),
             f"exec {shlex.quote(python)} -m harness run "
             f"{shlex.quote(str(run_dir / 'experiment.json'))}"]
    return "\n".join(lines) + "\n"


def docker_arguments(plan: ContainerPlan) -> list[str]:
    """``docker run`` arguments equal to what the Docker runner asks the engine for."""
    args = ["--user", plan.user, "--workdir", plan.working_dir]
    for key, value in sorted(plan.labels.items()):
        args += ["--label", f"{key}={value}"]
    for mount in plan.mounts:
        # --mount is one CSV record: a field holding a comma or a quote is quoted
        spec = ",".join(_csv_field(field) for field in (
            "type=bind", f"source={mount.source}", f"target={mount.target}",
            *(["readonly"] if mount.read_only else [])))
        args += ["--mount", spec]
    for key, value in sorted(plan.environment.items()):
        args += ["--env", f"{key}={value}"]
    if plan.network_mode:
        args += ["--network", plan.network_mode]
    args += ["--shm-size", plan.shm_size]
    if plan.mem_limit:
        args += ["--memory", plan.mem_limit, "--memory-swap", plan.mem_limit]
    for option in plan.security_opt:
        args += ["--security-opt", option]
    for capability in plan.cap_drop:
        args += ["--cap-drop", capability]
    if plan.privileged:
        args.append("--privileged")
    if plan.init:
        args.append("--init")
    if plan.read_only:
        args.append("--read-only")
    for path, options in plan.tmpfs.items():
        args += ["--tmpfs", f"{path}:{options}"]
    args += ["--pids-limit", str(plan.pids_limit)]
    return args


def docker_script(plan: ContainerPlan, run_id: str, study: str | None, gpus: bool,
                  rapl: str | None) -> str:
    """``exec docker``: the run's container on the node, stopped with the job.

    The container is not in the job's cgroup (the Docker daemon starts it), so the script
    owns its lifetime: SIGTERM (scancel, the time limit) stops it gracefully, every exit of the
    script removes it, and its OOM kill (the container's ``--memory``) is written to the log
    for the runner to read.
    """
    quote = shlex.quote
    args = " ".join(quote(arg) for arg in docker_arguments(plan))
    slurm_env = " ".join(f"--env {name}" for name in SLURM_VARIABLES)
    rapl_lines = ([f'if [ -d {quote(rapl)} ]; then extra+=(--mount '
                   f'type=bind,source={quote(rapl)},target={RAPL_TARGET},readonly '
                   f'--env {ROOT_ENV}={RAPL_TARGET}); fi'] if rapl else [])
    gpu_lines = (['if [ -n "${SLURM_JOB_GPUS:-}" ]; then '
                  'extra+=(--gpus "\\"device=${SLURM_JOB_GPUS}\\""); else '
                  'echo "error: the job was allocated no GPU (SLURM_JOB_GPUS is empty): set '
                  'execution.slurm.gpus_per_run and a gres line for the node" >&2; exit 2; fi']
                 if gpus else [])
    image = quote(plan.image)
    lines = [
        *header(run_id, study),
        f"name=llem-{run_id}-${{SLURM_JOB_ID}}",
        f"if ! image_id=$(docker image inspect --format '{{{{.Id}}}}' {image} 2>/dev/null); then",
        f'  echo "error: image {plan.image} is not on node ${{SLURMD_NODENAME:-?}}: build or '
        'load it there (llem images build, or docker load), or set execution.slurm.image" >&2',
        "  exit 2",
        "fi",
        "extra=()",
        *rapl_lines,
        *gpu_lines,
        'cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; }',
        "trap cleanup EXIT",
        'trap \'docker stop --time 10 "$name" >/dev/null 2>&1\' TERM INT',
        f'docker run --name "$name" {args} {slurm_env} --env "LLEM_IMAGE_ID=$image_id" '
        f'"${{extra[@]}}" {image} {" ".join(quote(arg) for arg in plan.command)} &',
        "child=$!",
        'wait "$child"; status=$?',
        '# a trapped signal ends the first wait early: wait for docker run itself',
        'while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done',
        'if [ "$(docker inspect --format \'{{.State.OOMKilled}}\' "$name" 2>/dev/null)" = true ]; '
        'then',
        '  echo "llem: the container ran out of memory (OOMKilled, its --memory limit)"',
        "fi",
        'exit "$status"',
    ]
    return "\n".join(lines) + "\n"


def _csv_field(field: str) -> str:
    """``field`` as one CSV field (quoted when it holds a comma, a quote or a line break)."""
    if any(char in field for char in ',"\n\r'):
        return '"' + field.replace('"', '""') + '"'
    return field


def _bind_list(plan: ContainerPlan, separator: str, mode: str) -> str:
    """Apptainer's ``--bind`` / pyxis' ``--container-mounts`` list of the plan's mounts.

    Raises:
        ConfigError: a path holds ``,`` or ``:``, which these lists cannot quote.
    """
    for mount in plan.mounts:
        for path in (mount.source, mount.target):
            if "," in path or ":" in path:
                raise ConfigError(
                    f"exec {mode} cannot mount {path}: its bind list separates mounts with ',' "
                    "and source from target with ':', and has no way to quote either",
                    fix="move the study, model or cache out of paths with ',' or ':' (or use "
                    "exec docker or local)")
    return ",".join(f"{m.source}:{m.target}" + (f"{separator}ro" if m.read_only else "")
                    for m in plan.mounts)


def apptainer_script(plan: ContainerPlan, sif: str, run_id: str, study: str | None,
                     gpus: bool) -> str:
    """``exec apptainer``: the image as SIF, the plan's mounts and environment, ``--nv``."""
    quote = shlex.quote
    env = ",".join(f"{k}={v}" for k, v in sorted({**plan.environment, **HARNESS_ENV}.items())
                   if k != "HOME")
    args = ["apptainer", "exec", "--containall", "--cleanenv", "--writable-tmpfs",
            *(["--nv"] if gpus else []), "--bind", _bind_list(plan, ":", "apptainer"),
            "--pwd", plan.working_dir, "--env", env, sif,
            "python", "-m", "harness", *plan.command]
    lines = [*header(run_id, study), "exec " + " ".join(quote(arg) for arg in args)]
    return "\n".join(lines) + "\n"


def pyxis_script(plan: ContainerPlan, run_id: str, study: str | None) -> str:
    """``exec pyxis``: ``srun --container-image`` of the image with the plan's mounts."""
    quote = shlex.quote
    exports = [f"export {k}={quote(v)}" for k, v in
               sorted({**plan.environment, **HARNESS_ENV}.items()) if k != "HOME"]
    args = ["srun", "--ntasks=1", f"--container-image={plan.image}",
            f"--container-mounts={_bind_list(plan, ':', 'pyxis')}",
            f"--container-workdir={plan.working_dir}", "--export=ALL",
            "python", "-m", "harness", *plan.command]
    lines = [*header(run_id, study), *exports, "exec " + " ".join(quote(arg) for arg in args)]
    return "\n".join(lines) + "\n"
