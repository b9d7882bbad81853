"""The Slurm runner against a real Slurm cluster: the single node tests/slurm/single-node.sh starts.

``.ci/run`` installs Debian's slurm-wlm and munge and starts the cluster (slurmctld and slurmd on
this host, memory enforced per job by jobacct_gather's OverMemoryKill). Without a cluster these
tests skip, unless LLEM_REQUIRE_SLURM=1 (CI), where a skip would prove nothing and fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from llem_testkit.cli import llem, only_study_dir, start_llem, wait_for_event

from harness.schema import ExperimentResult
from orchestrator.manifest import Manifest
from orchestrator.runners.slurm.client import SlurmClient, SlurmError

pytestmark = [pytest.mark.slow]

RUN_FILES = {"experiment.json", "result.json", "timeseries.parquet", "events.jsonl",
             "container.log"}


@pytest.fixture(scope="module")
def slurm() -> SlurmClient:
    """The cluster's client; skips (or fails, with LLEM_REQUIRE_SLURM=1) without a cluster."""
    client = SlurmClient()
    try:
        if shutil.which("sbatch") is None:
            raise SlurmError("sbatch is not installed here")
        client.ping()
    except SlurmError as error:
        if os.environ.get("LLEM_REQUIRE_SLURM") == "1":
            pytest.fail(f"LLEM_REQUIRE_SLURM=1 but no Slurm cluster answers: {error} "
                        "(bash tests/slurm/single-node.sh starts one)")
        pytest.skip(f"no Slurm cluster here: {error}")
    return client


def study_file(tmp_path: Path, model: Path, name: str, slurm: dict[str, object],
               **extra: object) -> Path:
    body = {
        "name": name, "model": str(model), "backend": "pytorch", "precision": "fp32",
        "n": 4, "input_len": 16, "output_len": 8,
        "warmup": {"n_warmup": 1, "min_seconds": 0},
        "execution": {"config_gap_s": 0, "cycle_gap_s": 0,
                      "slurm": {"poll_s": 1, "gpus_per_run": 0, **slurm}},
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text("\n".join(f"{key}: {json.dumps(value)}" for key, value in body.items()) + "\n")
    return path


def run_files(study_dir: Path) -> dict[str, set[str]]:
    """The file names of each run directory, by run."""
    return {run.name: {p.name for p in run.iterdir()} for run in sorted(study_dir.iterdir())
            if run.is_dir() and not run.name.startswith(".")}


def job_of(study_dir: Path, run_id: str) -> str:
    return str(json.loads((study_dir / ".slurm" / f"{run_id}.json").read_text())["job_id"])


def wait_ended(client: SlurmClient, job_id: str, timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found, _ = client.jobs_and_queue([job_id])
        if job_id in found and found[job_id].state not in ("PENDING", "RUNNING", "COMPLETING"):
            return found[job_id].state
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not end within {timeout_s:g} s")


@pytest.mark.docker
def test_exec_local_and_docker_write_what_the_docker_runner_writes(
        slurm: SlurmClient, cpu_image: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    """One study, three ways: the Docker runner, Slurm with exec local, Slurm with exec docker.

    The run directories hold the same files; each Slurm result records its job (id, node,
    partition), and exec docker ran the same image the Docker runner did.
    """
    sweep = {"sweep": {"pytorch.batch_size": [1, 2]}}
    dirs = {}
    for label, runner, settings in (("docker", "docker", {}),
                                    ("local", "slurm", {"exec": "local"}),
                                    ("sdocker", "slurm", {"exec": "docker", "mem": "4G"})):
        study = study_file(tmp_path, tiny_model_dir, f"s-{label}", settings, **sweep)
        done = llem("run", str(study), "--runner", runner, "--output", f"out-{label}", "-q",
                    cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        dirs[label] = only_study_dir(tmp_path / f"out-{label}")

    reference = run_files(dirs["docker"])
    assert reference and all(files >= RUN_FILES for files in reference.values())
    for label in ("local", "sdocker"):
        study_dir = dirs[label]
        assert run_files(study_dir) == reference, label
        manifest = Manifest.load(study_dir)
        assert [run.status for run in manifest.runs] == ["completed", "completed"]
        assert manifest.runner == "slurm"
        for run in manifest.runs:
            result = ExperimentResult.model_validate_json(
                (study_dir / run.run_id / "result.json").read_text())
            job = result.environment.scheduler
            assert job is not None and job.scheduler == "slurm"
            assert job.job_id == job_of(study_dir, run.run_id)
            assert job.node == socket.gethostname().split(".")[0]
            assert job.partition == "debug"
            assert result.throughput.output_tokens == 4 * 8
            script = (study_dir / ".slurm" / f"{run.run_id}.sh").read_text()
            if label == "sdocker":
                assert "docker run" in script and "--cap-drop ALL" in script
                assert result.environment.container_image_id is not None
            else:
                assert "-m harness run" in script
                assert result.environment.container_image_id is None
    docker_result = ExperimentResult.model_validate_json(
        next(dirs["docker"].glob("001_*/result.json")).read_text())
    slurm_docker = ExperimentResult.model_validate_json(
        next(dirs["sdocker"].glob("001_*/result.json")).read_text())
    same_image = docker_result.environment.container_image_id
    assert slurm_docker.environment.container_image_id == same_image
    leftover = subprocess.run(["docker", "ps", "-aq", "--filter", "label=llem.study=s-sdocker"],
                              capture_output=True, text=True, check=True)
    assert leftover.stdout.strip() == "", "exec docker left a container behind"


def test_time_limit_out_of_memory_and_outside_cancel_get_their_status(
        slurm: SlurmClient, tiny_model_dir: Path, tmp_path: Path) -> None:
    """Three jobs that Slurm ends, each recorded as what ended it.

    - a 1-minute time limit on a run whose warmup lasts 5 min: timeout, Slurm's limit named;
    - 300 MB of memory for a harness that imports torch: oom (slurmstepd's memory kill);
    - a job cancelled with scancel by someone else while it warms up: killed.
    """
    long_warmup = {"warmup": {"n_warmup": 1, "min_seconds": 300, "max_seconds": 600}}
    timed = start_llem(
        "run", str(study_file(tmp_path, tiny_model_dir, "limit",
                              {"exec": "local", "time_limit": "1"}, **long_warmup)),
        "--runner", "slurm", "--output", "out-limit", "-q", cwd=tmp_path)

    done = llem("run", str(study_file(tmp_path, tiny_model_dir, "oom",
                                      {"exec": "local", "mem": "300M"})),
                "--runner", "slurm", "--output", "out-oom", "-q", cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]  # a failed run: exit 1
    (run,) = Manifest.load(only_study_dir(tmp_path / "out-oom")).runs
    assert run.status == "failed" and run.failure is not None
    assert run.failure.cause == "oom", run.failure
    assert "execution.slurm.mem" in run.failure.message

    cancelled = start_llem(
        "run", str(study_file(tmp_path, tiny_model_dir, "cancel", {"exec": "local"},
                              **long_warmup)),
        "--runner", "slurm", "--output", "out-cancel", "-q", cwd=tmp_path)
    events = wait_for_event(tmp_path / "out-cancel", "*/001_*/events.jsonl", "warmup", 300)
    assert events is not None, "the run never reached warmup"
    study_dir = events.parent.parent
    subprocess.run(["scancel", job_of(study_dir, events.parent.name)], check=True)
    _, stderr = cancelled.communicate(timeout=300)
    assert cancelled.returncode == 1, stderr[-3000:]
    (run,) = Manifest.load(study_dir).runs
    assert run.failure is not None and run.failure.cause == "killed", run.failure
    assert "cancelled from outside" in run.failure.message

    _, stderr = timed.communicate(timeout=400)
    assert timed.returncode == 1, stderr[-3000:]
    (run,) = Manifest.load(only_study_dir(tmp_path / "out-limit")).runs
    assert run.failure is not None and run.failure.cause == "timeout", run.failure
    assert "time limit (1)" in run.failure.message
    assert any("DUE TO TIME LIMIT" in line for line in run.failure.log_tail)


def test_ctrl_c_cancels_the_job_and_exits_130(
        slurm: SlurmClient, tiny_model_dir: Path, tmp_path: Path) -> None:
    """Ctrl-C while a job runs: scancel, the harness finalises, the run is interrupted."""
    study = study_file(tmp_path, tiny_model_dir, "ctrlc", {"exec": "local"},
                       warmup={"n_warmup": 1, "min_seconds": 300, "max_seconds": 600},
                       sweep={"pytorch.batch_size": [1, 2]})
    process = start_llem("run", str(study), "--runner", "slurm", "--output", "out", "-q",
                         cwd=tmp_path)
    events = wait_for_event(tmp_path / "out", "*/001_*/events.jsonl", "warmup", 300)
    assert events is not None, "the first run never reached warmup"
    study_dir = events.parent.parent
    job_id = job_of(study_dir, events.parent.name)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-3000:]
    assert wait_ended(slurm, job_id) == "CANCELLED"
    manifest = Manifest.load(study_dir)
    assert [run.status for run in manifest.runs] == ["interrupted", "pending"]
    assert not (study_dir / ".slurm" / "002_pytorch-bs2_c1.json").exists()  # never submitted
    error = json.loads((events.parent / "error.json").read_text())
    assert error["phase"] == "warmup"  # the harness got SIGTERM and wrote its record


def test_detach_then_resume_collects_the_study(
        slurm: SlurmClient, tiny_model_dir: Path, tmp_path: Path) -> None:
    """--detach submits every run (chained in order) and returns; --resume follows them."""
    # a 10 s warmup: the resume below finds the first job still running and follows it
    study = study_file(tmp_path, tiny_model_dir, "detached", {"exec": "local"},
                       warmup={"n_warmup": 1, "min_seconds": 10},
                       sweep={"pytorch.batch_size": [1, 2]})
    started = time.monotonic()
    done = llem("run", str(study), "--runner", "slurm", "--output", "out", "--detach",
                cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 run(s) submitted" in done.stderr
    study_dir = only_study_dir(tmp_path / "out")
    assert [run.status for run in Manifest.load(study_dir).runs] == ["running", "running"]
    first, second = (json.loads((study_dir / ".slurm" / f"{run_id}.json").read_text())
                     for run_id in ("001_pytorch-bs1_c1", "002_pytorch-bs2_c1"))
    # the second runs after the first, whatever the cluster's free slots
    assert f"--dependency=afterany:{first['job_id']}" in second["options"]
    assert time.monotonic() - started < 120  # returned without waiting for the runs

    assert slurm.jobs_and_queue([str(first["job_id"])])[0], "the first job already ended"
    resumed = llem("run", "--resume", str(study_dir), "--runner", "slurm", "-q",
                   cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    manifest = Manifest.load(study_dir)
    assert [run.status for run in manifest.runs] == ["completed", "completed"]
    for run, record in zip(manifest.runs, (first, second), strict=True):
        result = ExperimentResult.model_validate_json(
            (study_dir / run.run_id / "result.json").read_text())
        assert result.environment.scheduler is not None
        assert result.environment.scheduler.job_id == str(record["job_id"])  # not resubmitted


def test_resume_detach_records_ended_jobs_and_submits_nothing_again(
        slurm: SlurmClient, tiny_model_dir: Path, tmp_path: Path) -> None:
    """A detached run whose job has ended is read and recorded, never wiped and resubmitted."""
    study = study_file(tmp_path, tiny_model_dir, "ended", {"exec": "local"})
    done = llem("run", str(study), "--runner", "slurm", "--output", "out", "--detach",
                cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    study_dir = only_study_dir(tmp_path / "out")
    job_id = job_of(study_dir, "001_pytorch_c1")
    assert wait_ended(slurm, job_id) == "COMPLETED"
    again = llem("run", "--resume", str(study_dir), "--runner", "slurm", "--detach",
                 cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 run(s) submitted" in again.stderr
    (run,) = Manifest.load(study_dir).runs
    assert run.status == "completed"
    assert job_of(study_dir, "001_pytorch_c1") == job_id  # the same job: nothing resubmitted
    result = ExperimentResult.model_validate_json(
        (study_dir / run.run_id / "result.json").read_text())
    assert result.environment.scheduler is not None
    assert result.environment.scheduler.job_id == job_id


def test_accounting_answers_for_a_job_the_controller_has_forgotten(
        slurm: SlurmClient, tmp_path: Path) -> None:
    """The watcher's accounting path against the real slurmdbd: a job absent from squeue (as
    after the controller's MinJobAge) is read from sacct, with its state, exit and node."""
    from orchestrator.runners.slurm.runner import JobWatcher

    if not slurm.accounting():
        if os.environ.get("LLEM_REQUIRE_SLURM") == "1":
            pytest.fail("LLEM_REQUIRE_SLURM=1 but the cluster keeps no accounting (Debian's "
                        "slurmdbd and mariadb-server: tests/slurm/single-node.sh sets it up)")
        pytest.skip("the cluster keeps no accounting")
    job_id = slurm.submit("#!/bin/sh\nexit 3\n", ["--output=/dev/null", "--mem=50M",
                                                  "--time=1", f"--chdir={tmp_path}"])
    assert wait_ended(slurm, job_id) == "FAILED"

    class Forgetful(SlurmClient):
        """The real cluster, but a controller that has already forgotten every job."""

        def jobs_and_queue(self, job_ids):  # type: ignore[no-untyped-def]
            return {}, {}

    watcher = JobWatcher(Forgetful(), poll_s=1.0)
    watcher.track(job_id)
    deadline = time.monotonic() + 30  # slurmctld hands the job's end to slurmdbd on its own
    while (job := watcher.state(job_id, fresh=True)) is None or job.state != "FAILED":
        assert time.monotonic() < deadline, f"sacct never had job {job_id}: {job}"
        time.sleep(1)
    assert job.source == "sacct"
    assert (job.exit_code, job.signal) == (3, None)
    assert job.node == socket.gethostname().split(".")[0]
