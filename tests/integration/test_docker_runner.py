"""The Docker runner against the real engine, with the cpu image built from images/."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from llem_testkit.cli import LLEM, llem, only_study_dir

from harness.schema import ExperimentResult
from harness.schema.result import ErrorRecord
from orchestrator import run_study
from orchestrator.manifest import Manifest
from orchestrator.runners.docker.labels import LABEL_RUN, LABEL_SESSION, LABEL_STUDY
from orchestrator.runners.docker.runner import DockerRunner
from orchestrator.stats import StudyStats
from orchestrator.summary import StudySummary

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CANARY = "hf_llemCanaryToken0123456789abcdefXYZ"
FAST = {"n": 4, "input_len": 16, "output_len": 8, "warmup": {"n_warmup": 1, "min_seconds": 0}}


def write_study(path: Path, model: Path, body: str, **top: object) -> Path:
    head = {"name": "d", "model": str(model), "backend": "pytorch", "precision": "fp32",
            **FAST, "execution": {"config_gap_s": 0, "cycle_gap_s": 0}, **top}
    path.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in head.items()) + "\n" + body)
    return path


def containers_of_study(engine, name: str) -> list:
    return [c for c in engine.containers(LABEL_SESSION) if c.labels.get(LABEL_STUDY) == name]


@pytest.fixture
def own_study(engine):
    """A study name of this test's own: other studies may share the engine, so every check
    and every removal is scoped to it. Fails the test if any of its containers is left."""
    name = f"d-{uuid.uuid4().hex[:8]}"
    yield name
    left = containers_of_study(engine, name)
    for container in left:
        engine.remove(container)
    assert not left, f"containers left behind: {[c.name for c in left]}"


def files_of(study_dir: Path, run_id: str) -> set[str]:
    return {p.name for p in (study_dir / run_id).iterdir()}


def test_four_runs_match_local_files_owned_by_user_and_leave_no_container(
        cpu_image, tiny_model_dir, tmp_path, engine, own_study):
    study = write_study(tmp_path / "s.yaml", tiny_model_dir,
                        "sweep:\n  precision: [fp32, bf16]\n  pytorch.batch_size: [1, 2]\n",
                        name=own_study)
    env = {**os.environ, "HF_TOKEN": CANARY}
    done = llem("run", str(study), "--runner", "docker", "--output", "dock", "-v", cwd=tmp_path,
                env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    docker_dir = only_study_dir(tmp_path / "dock")
    manifest = Manifest.load(docker_dir)
    assert [r.status for r in manifest.runs] == ["completed"] * 4
    local = llem("run", str(study), "--runner", "local", "--output", "loc", "-q", cwd=tmp_path,
                 timeout=900)
    assert local.returncode == 0, local.stderr[-3000:]
    local_dir = only_study_dir(tmp_path / "loc")
    for run in manifest.runs:
        assert files_of(docker_dir, run.run_id) == files_of(local_dir, run.run_id)
        result = ExperimentResult.model_validate_json(
            (docker_dir / run.run_id / "result.json").read_text())
        assert result.runner == "docker"
        assert result.environment.container_image_id == engine.image(cpu_image).id
    for path in docker_dir.rglob("*"):
        assert path.stat().st_uid == os.getuid(), path
        assert path.stat().st_gid == os.getgid(), path
    # The canary token reached the containers' environment but no file and no log.
    for path in [*docker_dir.rglob("*"), *local_dir.rglob("*")]:
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    assert CANARY not in done.stdout + done.stderr


def containers_of_run(engine, study: str, run_prefix: str) -> list:
    return [c for c in containers_of_study(engine, study)
            if c.labels.get(LABEL_RUN, "").startswith(run_prefix)]


def _kill_when_warming(engine, study: str, run_prefix: str, stop: threading.Event) -> None:
    while not stop.is_set():
        for container in containers_of_run(engine, study, run_prefix):
            logs = engine.client.api.logs(container.id).decode(errors="replace")
            if container.status == "running" and "run directory" in logs:
                time.sleep(3)  # well inside the 300 s warmup
                engine.client.api.kill(container.id)
                return
        time.sleep(0.5)


def test_faults_are_classified_and_the_study_continues(
        cpu_image, tiny_model_dir, tmp_path, engine, own_study):
    long_warmup = {"warmup": {"n_warmup": 1, "min_seconds": 300, "max_seconds": 600}}
    entries = [
        {"dataset": "missing-prompts.jsonl"},              # 001: the harness raises
        {**long_warmup, "pytorch": {"batch_size": 2}},     # 002: killed from outside
        {**long_warmup, "pytorch": {"batch_size": 3}},     # 003: exceeds its timeout
        {"pytorch": {"batch_size": 4}},                    # 004: fine
    ]
    body = "experiments:\n" + "".join(f"  - {json.dumps(e)}\n" for e in entries)
    study = write_study(tmp_path / "s.yaml", tiny_model_dir, body,
                        execution={"config_gap_s": 0, "timeout_s": 60},  # 003 only; 004 needs ~12 s
                        name=own_study)
    stop = threading.Event()
    killer = threading.Thread(target=_kill_when_warming,
                              args=(engine, own_study, "002_", stop), daemon=True)
    killer.start()
    try:
        summary, study_dir = run_study(study, DockerRunner(), output=tmp_path / "out")
    finally:
        stop.set()
    runs = {r.run_id[:3]: r for r in Manifest.load(study_dir).runs}
    assert runs["001"].failure is not None and runs["001"].failure.cause == "error"
    error = ErrorRecord.model_validate_json(
        (study_dir / runs["001"].run_id / "error.json").read_text())
    assert "Traceback" in error.traceback and "missing-prompts.jsonl" in error.message
    assert runs["002"].failure is not None and runs["002"].failure.cause == "killed"
    assert runs["003"].failure is not None and runs["003"].failure.cause == "timeout"
    assert any("run directory" in line for line in runs["003"].failure.log_tail)
    assert runs["004"].status == "completed"
    assert summary.counts == {"failed": 3, "completed": 1}


def test_memory_limit_too_small_is_oom_and_the_study_continues(
        cpu_image, tiny_model_dir, tmp_path, own_study):
    # Eager attention over 64 prompts of 1024 tokens materialises ~1 GB of scores at once: an
    # anonymous allocation the kernel cannot reclaim, so the OOM killer acts at once (a limit
    # that only squeezes the page cache would make the run thrash instead of dying).
    study = write_study(tmp_path / "s.yaml", tiny_model_dir,
                        "sweep:\n  pytorch.batch_size: [64, 63]\n", n=64, input_len=1024,
                        output_len=2, pytorch={"attn_implementation": "eager"},
                        execution={"config_gap_s": 0, "timeout_s": 300}, name=own_study)
    summary, study_dir = run_study(study, DockerRunner(mem_limit="800m"), output=tmp_path / "o")
    runs = Manifest.load(study_dir).runs
    assert [r.failure.cause for r in runs if r.failure] == ["oom", "oom"]
    assert "OOM killer" in runs[0].failure.message  # one wording for both runners
    assert summary.counts == {"failed": 2}


def test_sigkilled_orchestrator_leaves_an_orphan_that_clean_removes(
        cpu_image, tiny_model_dir, tmp_path, engine):
    name = f"orphan-{uuid.uuid4().hex[:8]}"  # other studies may share this engine: scope by it
    study = write_study(tmp_path / "s.yaml", tiny_model_dir, (
        "experiments:\n"
        "  - {pytorch: {batch_size: 1}}\n"
        "  - {pytorch: {batch_size: 2}, warmup: {n_warmup: 1, min_seconds: 300,"
        " max_seconds: 600}}\n"), name=name)
    process = subprocess.Popen([LLEM, "run", str(study), "--runner", "docker", "--output", "o",
                                "-q"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not containers_of_run(engine, name, "002_"):
            time.sleep(0.5)
        assert containers_of_run(engine, name, "002_"), "second run never started"
    finally:
        process.send_signal(signal.SIGKILL)  # the orchestrator dies without cleaning up
        process.wait(timeout=30)
    orphaned = containers_of_study(engine, name)
    assert len(orphaned) == 1, "the killed orchestrator's container should still be there"
    cleaned = llem("clean", "--study", name, timeout=120, check=True)
    # Any study started meanwhile with the Docker runner removes the orphans of dead sessions
    # too (DockerRunner.startup), another test's among them: then this clean finds none left.
    assert ("removed 1 orphaned container" in cleaned.stdout
            or "removed 0 orphaned container" in cleaned.stdout), cleaned.stdout
    assert containers_of_study(engine, name) == []
    study_dir = only_study_dir(tmp_path / "o")
    first = Manifest.load(study_dir).runs[0]
    assert first.status == "completed" and first.result_path
    ExperimentResult.model_validate_json((study_dir / first.result_path).read_text())


def test_missing_image_fails_preflight_with_the_build_command(tiny_model_dir, tmp_path):
    study = write_study(tmp_path / "s.yaml", tiny_model_dir, "")
    done = llem("run", str(study), "--runner", "docker", "--image", "llem/absent:never",
                "--output", "o", cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert "llem/absent:never" in done.stderr and "llem images build" in done.stderr
    assert not (tmp_path / "o").exists()


def test_cross_backend_study_names_the_build_command_of_each_missing_image(tiny_model_dir,
                                                                          tmp_path):
    # No TensorRT-LLM image exists on this engine (no registry), and no GPU: preflight must
    # stop before anything runs and say, per backend, which command builds the missing image.
    # Without a GPU vLLM runs in its CPU build: its image is llem/vllm-cpu, which CI builds
    # only for the vLLM tests, run after this one (tests/integration/conftest.py).
    vllm_cpu_built = subprocess.run(["docker", "image", "inspect", "llem/vllm-cpu:latest"],
                                    capture_output=True, check=False).returncode == 0
    study = tmp_path / "cross.yaml"
    study.write_text(f"base: {REPO / 'studies' / 'cross-backend.yaml'}\n"
                     f"model: {tiny_model_dir}\n")
    done = llem("run", str(study), "--runner", "docker", "--output", "o", cwd=tmp_path,
                timeout=120)
    assert done.returncode == 2, done.stderr
    vllm_line = "image llem/vllm-cpu:latest for backend vllm is not built"
    if vllm_cpu_built:
        assert "for backend vllm" not in done.stderr
    else:
        assert vllm_line in done.stderr
        assert "llem images build vllm-cpu" in done.stderr
    assert "llem/vllm:latest" not in done.stderr  # the GPU image is not what runs here
    assert "image llem/tensorrt:latest for backend tensorrt is not built" in done.stderr
    assert "llem images build tensorrt" in done.stderr
    assert not (tmp_path / "o").exists()


def test_a_docker_top_up_of_a_local_study_is_recorded_per_run_and_never_pooled(
        cpu_image, tiny_model_dir, tmp_path, own_study):
    # The reproduction: a study run locally, topped up with --runner docker, once pooled local
    # and container cycles into one configuration's statistics and mislabelled the runner.
    study = write_study(tmp_path / "s.yaml", tiny_model_dir, "sweep:\n  pytorch.batch_size: [1]\n",
                        name=own_study)
    local = llem("run", str(study), "--runner", "local", "--output", "o", "-q", cwd=tmp_path,
                 timeout=600)
    assert local.returncode == 0, local.stderr[-3000:]
    study_dir = only_study_dir(tmp_path / "o")
    docker = llem("run", "--resume", str(study_dir), "--cycles", "2", "--runner", "docker", "-q",
                  cwd=tmp_path, timeout=600)
    assert docker.returncode == 0, docker.stderr[-3000:]
    manifest = Manifest.load(study_dir)
    assert manifest.runner == "docker"
    assert [(r.cycle, r.runner) for r in manifest.runs] == [(1, "local"), (2, "docker")]
    assert [r.environment.runner for r in manifest.runs] == ["local", "docker"]
    assert [i.runner for i in manifest.invocations] == ["local", "docker"]
    stats = StudyStats.load(study_dir)
    assert sorted(c.environment.runner for c in stats.configurations) == ["docker", "local"]
    # one run each (on CPUs a run may be flagged and left out of the figures: still its own)
    assert all(len(c.run_ids) + c.n_excluded == 1 for c in stats.configurations)
    (warning,) = stats.warnings
    assert "not pooled" in warning and "runner local vs docker" in warning
    assert "not pooled" in docker.stderr
    assert StudySummary.load(study_dir).warnings == [warning]
