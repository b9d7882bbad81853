"""The Slurm runner on a cluster of three containers: a controller ``ctl``, nodes ``n1``, ``n2``.

The containers (the image llem/slurm-node: llem/cpu plus Debian's Slurm 22.05 and munge, built by
tests/slurm/node/build.sh) are started by testcontainers on a network of their own and share
this host's munge key, one slurm.conf, the test's directory (the studies' output and the jobs'
working directory) and the tiny model, each at the same path as here. llem runs on this host
with ``SLURM_CONF`` naming that slurm.conf: this host's Slurm client commands (the same
release) submit to the containers' controller, and the jobs run the harness of the llem/cpu
image (``exec: local``, ``execution.slurm.python``) inside the node containers.

Needs Docker (skips without it unless LLEM_REQUIRE_DOCKER=1), Slurm's client commands and a munge
daemon on this host with a readable key (skips without them unless LLEM_REQUIRE_SLURM=1).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from llem_testkit.cli import LLEM, llem, only_study_dir, wait_for_event
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from harness.schema import ExperimentResult
from orchestrator.manifest import Manifest

pytestmark = [pytest.mark.slow, pytest.mark.docker]

REPO = Path(__file__).resolve().parents[2]
NODE_IMAGE = "llem/slurm-node:latest"
NODE_PYTHON = "/opt/llem/bin/python"
"""The llem/cpu image's interpreter (with the harness): the jobs' ``execution.slurm.python``."""
MUNGE_KEY = Path("/etc/munge/munge.key")
LABEL = "llem.test"
LABEL_VALUE = "slurm-multinode"
OWNER_LABEL = "llem.test.pid"
NODES = ("n1", "n2")
RUN_FILES = {"experiment.json", "result.json", "timeseries.parquet", "events.jsonl",
             "container.log"}
"""What a run directory holds under every runner (as in test_slurm.py)."""

SLURM_CONF = """\
ClusterName=llem-multi
SlurmctldHost=ctl({ctl_ip})
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/lib/slurm/ctld
SlurmdSpoolDir=/var/lib/slurm/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
KillWait=10
SlurmdTimeout=10
NodeName=n[1-2] CPUs=1 RealMemory=2048 State=UNKNOWN
PartitionName=debug Nodes=n[1-2] Default=YES MaxTime=INFINITE State=UP
"""
"""One CPU per node and no DefMemPerCPU (a job gets the node's memory): one job per node at a
time, so two runs at once are on two nodes. SlurmdTimeout=10: a node that stops answering is
DOWN (its job NODE_FAIL) within about 10 s."""


def _skip_or_fail(reason: str) -> None:
    """Skip for want of Slurm or munge here; fail instead under LLEM_REQUIRE_SLURM=1.

    No Docker engine: conftest.py's collection hook skips (or fails under LLEM_REQUIRE_DOCKER=1).
    """
    if os.environ.get("LLEM_REQUIRE_SLURM") == "1":
        pytest.fail(f"LLEM_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


@dataclass
class Cluster:
    """The running cluster, as the tests use it.

    Attributes:
        root: the directory every container mounts at the same path (studies and their output).
        env: this host's environment with ``SLURM_CONF`` naming the cluster's configuration.
        containers: the testcontainers ``DockerContainer`` of each node, by name.
    """

    root: Path
    env: dict[str, str]
    containers: dict[str, DockerContainer]

    def start_llem(self, *args: str) -> subprocess.Popen[str]:
        """``llem ARGS`` in ``root`` against this cluster, not waited for."""
        return subprocess.Popen([LLEM, *args], cwd=self.root, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def squeue(self) -> dict[str, dict[str, object]]:
        """Every job the controller holds, by id (``squeue --json``)."""
        done = subprocess.run(["squeue", "--json"], env=self.env, capture_output=True,
                              text=True, check=True, timeout=60)
        return {str(job["job_id"]): job for job in json.loads(done.stdout)["jobs"]}

    def node_states(self) -> dict[str, str]:
        """Each node's state as ``sinfo`` reads it (idle, alloc, down*, ...)."""
        done = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], env=self.env,
                              capture_output=True, text=True, check=False, timeout=60)
        return dict(line.split() for line in done.stdout.splitlines() if line.strip())


def _remove_leftovers() -> None:
    """Containers and networks of this module that a killed test process left behind.

    Each carries the id of the process that started it: those of a process still alive here
    (another test session) are left alone.
    """
    for kind in ("container", "network"):
        listed = subprocess.run(
            ["docker", kind, "ls", "-q", *(["-a"] if kind == "container" else []),
             "--filter", f"label={LABEL}={LABEL_VALUE}",
             "--format", f'{{{{.ID}}}} {{{{.Label "{OWNER_LABEL}"}}}}'],
            capture_output=True, text=True, check=False)
        dead = [ident for ident, _, owner in (line.partition(" ") for line in
                                              listed.stdout.splitlines())
                if not (owner.isdigit() and _alive(int(owner)))]
        if dead:
            subprocess.run(["docker", kind, "rm", *(["-f"] if kind == "container" else []),
                            *dead], capture_output=True, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            tiny_model_dir: Path) -> Iterator[Cluster]:
    """A controller and two compute nodes as containers; all removed at the end.

    The node image is built on the ``cpu_image`` fixture's image (this checkout's harness),
    once Slurm's commands and munge are known to be here.
    """
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        _skip_or_fail("Slurm's client commands are not installed here")
    if not os.access(MUNGE_KEY, os.R_OK) or subprocess.run(
            ["munge", "-n"], capture_output=True, check=False).returncode != 0:
        _skip_or_fail(f"no munge daemon here with a readable {MUNGE_KEY}")
    cpu_image = request.getfixturevalue("cpu_image")
    # No reaper container (it is an image from a registry); the fixture removes what it starts.
    testcontainers_config.ryuk_disabled = True
    built = subprocess.run(["bash", str(REPO / "tests" / "slurm" / "node" / "build.sh"),
                            cpu_image],
                           capture_output=True, text=True, timeout=1800, check=False)
    assert built.returncode == 0, f"llem/slurm-node build failed:\n{built.stderr[-3000:]}"
    _remove_leftovers()

    root = tmp_path_factory.mktemp("multinode")
    conf_dir = tmp_path_factory.mktemp("slurm-conf")
    labels = {LABEL: LABEL_VALUE, OWNER_LABEL: str(os.getpid())}
    tag = secrets.token_hex(4)
    network = Network(docker_network_kw={"labels": labels}).create()
    started: list[DockerContainer] = []

    def container(name: str, *command: str) -> DockerContainer:
        node = (DockerContainer(NODE_IMAGE)
                .with_name(f"llem-slurm-{tag}-{name}")
                .with_network(network).with_network_aliases(name)
                .with_kwargs(hostname=name, labels=labels)
                .with_volume_mapping(str(conf_dir), "/etc/slurm", "ro")
                .with_volume_mapping(str(MUNGE_KEY), "/run/llem/munge.key", "ro")
                .with_volume_mapping(str(root), str(root), "rw")
                .with_volume_mapping(str(tiny_model_dir), str(tiny_model_dir), "ro")
                .with_command(list(command)))
        started.append(node)
        return node.start()

    try:
        ctl = container("ctl", "slurmctld")
        ctl.get_wrapped_container().reload()  # the create-time record has no address
        ctl_ip = ctl.get_wrapped_container().attrs["NetworkSettings"]["Networks"][
            network.name]["IPAddress"]
        (conf_dir / "slurm.conf").write_text(SLURM_CONF.format(ctl_ip=ctl_ip))
        nodes = {name: container(name, "slurmd", name) for name in NODES}
        env = {**os.environ, "SLURM_CONF": str(conf_dir / "slurm.conf")}
        cluster = Cluster(root, env, nodes)
        deadline = time.monotonic() + 90
        while cluster.node_states() != dict.fromkeys(NODES, "idle"):
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {c.get_wrapped_container().name}\n"
                                 + c.get_wrapped_container().logs(tail=15).decode()
                                 for c in started)
                raise AssertionError(f"the nodes did not come up: {cluster.node_states()}\n"
                                     f"{logs}")
            time.sleep(0.5)
        yield cluster
    finally:
        for node in reversed(started):
            node.stop()
        network.remove()


def study_file(root: Path, model: Path, name: str, **extra: object) -> Path:
    """A study of the tiny model run by the nodes' harness (``exec: local``)."""
    body = {
        "name": name, "model": str(model), "backend": "pytorch", "precision": "fp32",
        "n": 4, "input_len": 16, "output_len": 8,
        "warmup": {"n_warmup": 1, "min_seconds": 0},
        "execution": {"config_gap_s": 0, "cycle_gap_s": 0,
                      "slurm": {"poll_s": 1, "exec": "local", "python": NODE_PYTHON,
                                "gpus_per_run": 0}},
        **extra,
    }
    path = root / f"{name}.yaml"
    path.write_text("\n".join(f"{key}: {json.dumps(value)}" for key, value in body.items()) + "\n")
    return path


def result_of(study_dir: Path, run_id: str) -> ExperimentResult:
    return ExperimentResult.model_validate_json((study_dir / run_id / "result.json").read_text())


def run_files(study_dir: Path) -> dict[str, set[str]]:
    """The file names of each run directory, by run."""
    return {run.name: {p.name for p in run.iterdir()} for run in sorted(study_dir.iterdir())
            if run.is_dir() and not run.name.startswith(".")}


def test_one_study_spreads_over_both_nodes_one_lane_each(cluster: Cluster,
                                                         tiny_model_dir: Path) -> None:
    """A study of two configurations x two cycles with ``nodes: [n1, n2]``: one lane per node.

    Cycle 1 runs on n1 and cycle 2 on n2, each node in the plan's order, and the two nodes work
    at the same time (each lane's first run overlaps the other's). Every run directory holds
    what it holds under the other runners, and its result names the node and job that ran it.
    """
    study = study_file(cluster.root, tiny_model_dir, "spread",
                       sweep={"pytorch.batch_size": [1, 2]})
    body = dict(line.split(": ", 1) for line in study.read_text().splitlines())
    execution = json.loads(body["execution"])
    execution["n_cycles"] = 2
    execution["slurm"]["nodes"] = list(NODES)
    body["execution"] = json.dumps(execution)
    study.write_text("".join(f"{key}: {value}\n" for key, value in body.items()))
    done = llem("run", str(study), "--runner", "slurm", "--output", "out-spread", "-q",
                cwd=cluster.root, env=cluster.env, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    study_dir = only_study_dir(cluster.root / "out-spread")
    manifest = Manifest.load(study_dir)
    assert [run.status for run in manifest.runs] == ["completed"] * 4
    assert all(files == RUN_FILES for files in run_files(study_dir).values()), \
        run_files(study_dir)
    spans: dict[str, list[tuple[float, float]]] = {node: [] for node in NODES}
    for run in manifest.runs:
        result = result_of(study_dir, run.run_id)
        job = result.environment.scheduler
        assert job is not None and job.scheduler == "slurm" and job.partition == "debug"
        record = json.loads((study_dir / ".slurm" / f"{run.run_id}.json").read_text())
        assert job.job_id == str(record["job_id"])
        cycle = int(run.run_id.rsplit("_c", 1)[1])
        assert job.node == NODES[cycle - 1], (run.run_id, job.node)  # cycle k on lane k
        spans[job.node].append(event_span(study_dir / run.run_id / "events.jsonl"))
    (first_n1, _), (first_n2, _) = (sorted(spans[node]) for node in NODES)
    assert first_n1[0] < first_n2[1] and first_n2[0] < first_n1[1], spans  # side by side


def event_span(events: Path) -> tuple[float, float]:
    """When a run's harness wrote its first and its last event (wall-clock seconds)."""
    stamps = [json.loads(line)["time"] for line in events.read_text().splitlines() if line.strip()]
    return min(stamps), max(stamps)


def test_a_node_stopped_mid_run_is_a_node_failure_redone_on_resume(
        cluster: Cluster, tiny_model_dir: Path) -> None:
    """The node of a running job is killed: node_failure, exit 1; --resume redoes the run.

    The run warms up for 20 s; the node is killed (SIGKILL to its container, as a power cut)
    as soon as the run's events say warmup. The controller marks the node DOWN and the job
    NODE_FAIL; llem records the run failed with cause node_failure, naming the node. The
    resumed run is a new job, on the node left. Last in this file: the node stays down.
    """
    study = study_file(cluster.root, tiny_model_dir, "nodefail",
                       warmup={"n_warmup": 1, "min_seconds": 20, "max_seconds": 60})
    process = cluster.start_llem("run", str(study), "--runner", "slurm", "--output",
                                 "out-nodefail", "-q")
    # A loaded CI host (the other test worker runs real jobs too) needs more than 2 minutes.
    events = wait_for_event(cluster.root / "out-nodefail", "*/001_*/events.jsonl", "warmup",
                            300)
    if events is None:
        process.kill()
        _, stderr = process.communicate(timeout=60)
        raise AssertionError(f"the run never reached warmup; nodes {cluster.node_states()}, "
                             f"jobs {cluster.squeue()}; llem said:\n{stderr[-3000:]}")
    study_dir, run_id = events.parent.parent, events.parent.name
    first_job = str(json.loads((study_dir / ".slurm" / f"{run_id}.json").read_text())["job_id"])
    node = str(cluster.squeue()[first_job]["nodes"])
    assert node in NODES
    cluster.containers[node].get_wrapped_container().kill()

    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 1, stderr[-3000:]
    (run,) = Manifest.load(study_dir).runs
    assert run.status == "failed" and run.failure is not None
    assert run.failure.cause == "node_failure", run.failure
    assert node in run.failure.message and "NODE_FAIL" in run.failure.message
    assert cluster.node_states()[node].startswith("down")

    resumed = cluster.start_llem("run", "--resume", str(study_dir), "--runner", "slurm", "-q")
    try:
        _, stderr = resumed.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        resumed.kill()
        _, stderr = resumed.communicate(timeout=60)
        raise AssertionError(f"the resume did not end; nodes {cluster.node_states()}, jobs "
                             f"{cluster.squeue()}; llem said:\n{stderr[-3000:]}") from None
    assert resumed.returncode == 0, stderr[-3000:]
    (run,) = Manifest.load(study_dir).runs
    assert run.status == "completed"
    job = result_of(study_dir, run.run_id).environment.scheduler
    assert job is not None
    (survivor,) = set(NODES) - {node}
    assert job.node == survivor
    assert job.job_id != first_job
    assert run_files(study_dir) == {run.run_id: RUN_FILES}
