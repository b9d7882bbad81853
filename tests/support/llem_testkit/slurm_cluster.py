"""A Slurm cluster in memory for the Slurm runner's unit tests: ``subprocess.run`` for sbatch,
squeue, scancel and sacct, with the study set-up those tests share.

Jobs move only when a test moves them (:meth:`FakeCluster.set`); squeue lists every job it
holds, in the JSON shape of Slurm 22.05 (``squeue --json``), and sacct answers as a cluster
without accounting does.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.io import write_json
from harness.schema.reading import read_model
from harness.schema.run_spec import RunSpec
from llem_testkit.results import fake_result
from orchestrator.execute import StudyExecution, plan
from orchestrator.manifest import Manifest
from orchestrator.runners.slurm.client import SlurmClient
from orchestrator.runners.slurm.runner import SlurmRunner, job_record
from orchestrator.study import load_study
from orchestrator.study.execution import SlurmConfig
from orchestrator.study_dir import new_manifest, save_manifest

ALIVE = ("PENDING", "RUNNING", "COMPLETING")
NODES = ["n1", "n2"]
"""The nodes of the lanes tests' studies (``execution.slurm.nodes``)."""


class FakeCluster:
    """``subprocess.run`` for sbatch, squeue, scancel and sacct, over jobs kept in memory."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.submitted: list[tuple[str, list[str]]] = []
        self.cancelled: list[str] = []
        self.next_id = 100
        self.on_squeue: list[Any] = []  # callables run before each squeue answer
        self.asked_node: dict[str, str] = {}  # job -> the node of its --nodelist
        self.depends_on: dict[str, str] = {}  # job -> the job of its --dependency=afterany

    def add(self, state: str, name: str = "wrap", exit_code: int = 0,
            reason: str = "None", priority: int = 1000, comment: str = "") -> str:
        job_id = str(self.next_id)
        self.next_id += 1
        self.jobs[job_id] = {"job_id": int(job_id), "job_state": state, "exit_code": exit_code,
                             "state_reason": reason, "nodes": "" if state == "PENDING" else "vm",
                             "partition": "debug", "priority": priority, "restart_cnt": 0,
                             "name": name, "comment": comment}  # squeue --json lists both
        return job_id

    def set(self, job_id: str, state: str, exit_code: int = 0) -> None:
        """Move a job to ``state``, on the node its ``--nodelist`` named (else ``vm``)."""
        node = self.asked_node.get(job_id) or "vm"
        self.jobs[job_id].update(job_state=state, exit_code=exit_code, nodes=node)

    def after(self, job_id: str) -> str | None:
        """The job ``job_id`` was submitted to start after (``--dependency=afterany:ID``)."""
        return self.depends_on.get(job_id)

    def alive(self) -> set[str]:
        return {job_id for job_id, job in self.jobs.items() if job["job_state"] in ALIVE}

    def __call__(self, args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        args = list(args)
        if args[0] == "sbatch":
            options = args[2:]
            name = next(o.split("=", 1)[1] for o in options if o.startswith("--job-name="))
            comment = next((o.split("=", 1)[1] for o in options if o.startswith("--comment=")),
                           "")
            depends = next((o.rsplit(":", 1)[1] for o in options
                            if o.startswith("--dependency=")), None)
            job_id = self.add("PENDING", name, reason="Dependency" if depends else "None",
                              comment=comment)
            node = next((o.split("=", 1)[1] for o in options if o.startswith("--nodelist=")),
                        None)
            if node is not None:
                self.asked_node[job_id] = node
            if depends is not None:
                self.depends_on[job_id] = depends
            self.submitted.append((job_id, options))
            return subprocess.CompletedProcess(args, 0, f"{job_id}\n", "")
        if args[0] == "squeue":
            for hook in list(self.on_squeue):
                hook()
            return subprocess.CompletedProcess(args, 0, json.dumps(
                {"jobs": list(self.jobs.values()), "errors": []}), "")
        if args[0] == "scancel":
            for job_id in args[1:]:
                self.cancelled.append(job_id)
                if job_id in self.jobs and self.jobs[job_id]["job_state"] in ALIVE:
                    self.set(job_id, "CANCELLED", exit_code=15)
            return subprocess.CompletedProcess(args, 0, "", "")
        if args[0] == "sacct":
            return subprocess.CompletedProcess(args, 1, "", "Slurm accounting storage is "
                                               "disabled\n")
        raise AssertionError(f"unexpected command {args}")


def make_runner(cluster: FakeCluster, **settings: Any) -> SlurmRunner:
    runner = SlurmRunner(SlurmConfig(**{"exec": "local", "gpus_per_run": 0, "poll_s": 1,
                                        **settings}),
                         client=SlurmClient(run=cluster))
    runner.sleep = lambda seconds: None  # the fake cluster answers at once
    return runner


def make_study(tmp_path: Path, gap: float = 0.0, stall: float | None = None,
               cycles: int = 1, slurm: dict[str, Any] | None = None) -> Any:
    """A study of two configurations (pytorch batch sizes 1 and 2), ``cycles`` times each."""
    path = tmp_path / "s.yaml"
    stall_line = f", stall_timeout_s: {stall}" if stall is not None else ""
    slurm_line = f", slurm: {json.dumps(slurm)}" if slurm else ""
    path.write_text("model: m\nbackend: pytorch\n"
                    f"execution: {{config_gap_s: {gap}, cycle_gap_s: 0, n_cycles: {cycles}"
                    f"{stall_line}{slurm_line}}}\n"
                    "sweep:\n  pytorch.batch_size: [1, 2]\n")
    return load_study(path)


def new_study_dir(tmp_path: Path, study: Any,
                  runs: int | None = None) -> tuple[Path, Manifest, list[Any]]:
    """A study directory for ``study`` with its manifest saved: (directory, manifest, runs)."""
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    planned = plan(study)[:runs]
    manifest = new_manifest(study, planned, "slurm")
    save_manifest(study_dir, manifest)
    return study_dir, manifest, planned


def job_of(study_dir: Path, run_id: str) -> str:
    return str(json.loads(job_record(study_dir / run_id).read_text())["job_id"])


def option(options: list[str], name: str) -> str | None:
    """The value of ``--name=VALUE`` among sbatch ``options``, or None."""
    return next((o.split("=", 1)[1] for o in options if o.startswith(f"--{name}=")), None)


def lanes_study(tmp_path: Path, cycles: int = 2, gap: float = 0.0,
                **slurm: Any) -> tuple[Any, Path, Manifest, list[Any]]:
    """A study on :data:`NODES`: (study, directory, manifest, runs)."""
    study = make_study(tmp_path, gap=gap, cycles=cycles, slurm={"nodes": NODES, **slurm})
    return (study, *new_study_dir(tmp_path, study))


def write_result(run_dir: Path) -> None:
    """What the harness writes once its measurement is done (before it unloads and exits)."""
    spec = read_model(run_dir / "experiment.json", RunSpec)
    write_json(run_dir / "result.json", fake_result(spec, energy_j=100.0))


def complete(cluster: FakeCluster, study_dir: Path, run_id: str) -> None:
    """The run's job ends COMPLETED, its result.json written (as the harness does)."""
    write_result(study_dir / run_id)
    cluster.set(job_of(study_dir, run_id), "COMPLETED")


def detach(study: Any, study_dir: Path, manifest: Any, runs: list[Any], cluster: FakeCluster,
           **slurm: Any) -> None:
    """``llem run --detach`` (or ``--resume DIR --detach``) of ``runs`` on ``cluster``."""
    StudyExecution(study, study_dir, make_runner(cluster, **slurm),
                   detach=True)._run_pending(runs, manifest)


def simulated_time(runner: Any) -> list[float]:
    """The runner's clock and sleep on simulated time; returns the clock's cell."""
    now = [0.0]
    runner.clock = lambda: now[0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    runner.sleep = sleep
    return now
