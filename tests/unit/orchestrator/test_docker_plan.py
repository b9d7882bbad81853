"""The container every run gets: security defaults, mounts, labels, environment allow-list."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness.schema import ExperimentConfig
from harness.schema.run_spec import RunSpec
from orchestrator.runners.docker.api import Engine, EngineError, EngineUnreachable, NotFoundError
from orchestrator.runners.docker.plan import MachineSettings, plan_container
from orchestrator.runners.docker.runner import classify
from orchestrator.runners.docker.sessions import orphans, session_alive, session_labels
from orchestrator.runners.session import Session

CANARY = "hf_canaryCANARYcanaryCANARY0123456789"


class FakeContainer:
    def __init__(self, labels, name="c"):
        self.labels = labels
        self.name = name


def plan(tmp_path: Path, model: str = "./model-dir", gpu_ids=None, **machine):
    (tmp_path / "model-dir").mkdir(exist_ok=True)
    run_dir = tmp_path / "study" / "001_x_c1"
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(run_id="001_x_c1", study="s", config=ExperimentConfig(
        model=model, backend="pytorch"))
    settings = MachineSettings(uid=1234, gid=5678, cwd=tmp_path, hf_cache=None,
                               host_env={"HF_TOKEN": CANARY}, **machine)
    session = Session("abc123", 42, "777", "host-a")
    return plan_container(run_dir, spec, "llem/cpu:latest", "sha256:img", None, session,
                          settings, gpu_ids=gpu_ids), run_dir


def test_security_defaults(tmp_path):
    container, _ = plan(tmp_path)
    kwargs = container.create_kwargs()
    assert kwargs["user"] == "1234:5678"
    assert kwargs["cap_drop"] == ["ALL"]
    assert kwargs["security_opt"] == ["no-new-privileges"]
    assert kwargs["privileged"] is False
    assert kwargs["init"] is True
    assert kwargs["shm_size"] == "2g"
    assert "device_requests" not in kwargs  # the cpu image asks for no GPU
    sources = [mount["Source"] for mount in kwargs["mounts"]]
    assert not any("docker.sock" in source for source in sources)
    assert "volumes" not in kwargs and "ports" not in kwargs


def test_root_filesystem_is_read_only_with_a_tmpfs_home_and_a_pids_limit(tmp_path):
    container, run_dir = plan(tmp_path)
    kwargs = container.create_kwargs()
    assert kwargs["read_only"] is True
    # The only writable places: the mounts (run dir rw) and one tmpfs, which is also HOME, so
    # library caches (torch, triton, vLLM) land there; exec allowed for compiled kernels.
    assert list(kwargs["tmpfs"]) == ["/tmp"]
    options = kwargs["tmpfs"]["/tmp"].split(",")
    assert "exec" in options and "noexec" not in options and "nosuid" in options
    assert kwargs["environment"]["HOME"] == "/tmp"
    writable = [m["Target"] for m in kwargs["mounts"] if not m["ReadOnly"]]
    assert writable == [str(run_dir.resolve())]
    assert 0 < kwargs["pids_limit"] <= 8192


def test_mounts_run_dir_rw_and_local_model_ro_at_host_paths(tmp_path):
    container, run_dir = plan(tmp_path)
    mounts = {m.target: m for m in container.mounts}
    assert mounts[str(run_dir)].read_only is False
    model = str((tmp_path / "model-dir").resolve())
    assert mounts[model].read_only is True and mounts[model].source == model
    assert container.command == ["run", str(run_dir / "experiment.json")]
    assert container.working_dir == str(tmp_path)
    assert container.network_mode == "none"  # the model is local: no network at all


def test_the_hosts_rapl_tree_is_bound_read_only_when_present(tmp_path):
    rapl = tmp_path / "powercap" / "intel-rapl"
    (rapl / "intel-rapl:0").mkdir(parents=True)
    container, _ = plan(tmp_path, rapl=rapl)
    bound = [m for m in container.mounts if m.target == "/llem/powercap"]
    assert [(m.source, m.read_only) for m in bound] == [(str(rapl), True)]
    assert container.environment["LLEM_POWERCAP_ROOT"] == "/llem/powercap"


def test_no_rapl_tree_on_the_host_binds_nothing(tmp_path):
    container, _ = plan(tmp_path)
    assert all("powercap" not in m.source + m.target for m in container.mounts)
    assert "LLEM_POWERCAP_ROOT" not in container.environment


def test_hub_model_not_cached_keeps_network(tmp_path):
    container, _ = plan(tmp_path, model="org/not-downloaded")
    assert container.network_mode is None


def test_labels_identify_session_study_and_run(tmp_path):
    container, _ = plan(tmp_path)
    assert container.labels["llem.session"] == "abc123"
    assert container.labels["llem.study"] == "s"
    assert container.labels["llem.run"] == "001_x_c1"
    assert container.labels["llem.session.pid"] == "42"


def test_environment_is_an_allow_list(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "leak")
    monkeypatch.setenv("HF_TOKEN", CANARY)
    detected = MachineSettings.detect()
    assert detected.host_env == {"HF_TOKEN": CANARY}
    container, _ = plan(tmp_path)
    assert container.environment["HF_TOKEN"] == CANARY
    assert container.environment["HF_HUB_OFFLINE"] == "1"
    assert "AWS_SECRET_ACCESS_KEY" not in container.environment


def test_gpu_request_through_nvidia_runtime(tmp_path):
    container, _ = plan(tmp_path, gpu_ids=[1, 3])
    (request,) = container.create_kwargs()["device_requests"]
    assert request["Driver"] == "nvidia" and request["DeviceIDs"] == ["1", "3"]
    assert request["Capabilities"] == [["gpu"]]


def test_classification(tmp_path):
    log = tmp_path / "container.log"
    log.write_text("line 1\nerror: boom\n")
    assert classify(None, {"ExitCode": 0}, log, 10).end == "ok"
    assert classify(None, {"ExitCode": 1}, log, 10).end == "error"
    oom = classify(None, {"ExitCode": 137, "OOMKilled": True}, log, 10)
    assert oom.end == "oom" and oom.log_tail == ["line 1", "error: boom"]
    assert classify(None, {"ExitCode": 137, "OOMKilled": False}, log, 10).end == "killed"
    timeout = classify("timeout", {"ExitCode": 137}, log, 10)
    assert timeout.end == "timeout" and "10 s" in timeout.message and timeout.log_tail
    assert classify("interrupted", {"ExitCode": 130}, log, 10).end == "interrupted"
    stalled = classify("stalled", {"ExitCode": 143}, log, 10, "no event for 301 s")
    assert stalled.end == "stalled" and stalled.message.startswith("no event for 301 s")
    assert stalled.log_tail == ["line 1", "error: boom"]


def test_orphans_are_containers_of_dead_sessions():
    me = Session.current()
    mine = FakeContainer(session_labels(me), "mine")
    dead = FakeContainer({**session_labels(me), "llem.session": "old",
                          "llem.session.pid": "999999999"}, "dead")
    recycled = FakeContainer({**session_labels(me), "llem.session": "older",
                              "llem.session.pid_start": "1"}, "recycled-pid")
    elsewhere = FakeContainer({**dead.labels, "llem.session.host": "other-host"}, "elsewhere")
    assert session_alive(session_labels(me))
    assert [c.name for c in orphans([mine, dead, recycled, elsewhere], me)] == [
        "dead", "recycled-pid"]


def test_orphans_can_be_limited_to_one_study():
    me = Session.current()
    dead = {**session_labels(me), "llem.session": "old", "llem.session.pid": "999999999"}
    of_a = FakeContainer({**dead, "llem.study": "a"}, "of-a")
    of_b = FakeContainer({**dead, "llem.study": "b"}, "of-b")
    assert [c.name for c in orphans([of_a, of_b], me, study="b")] == ["of-b"]


def test_tensorrt_runs_get_the_engine_cache_read_write_at_its_host_path(tmp_path):
    (tmp_path / "model-dir").mkdir()
    run_dir = tmp_path / "study" / "001_x_c1"
    run_dir.mkdir(parents=True)
    engines = tmp_path / "engines"
    settings = MachineSettings(uid=1, gid=1, cwd=tmp_path, hf_cache=None, host_env={})
    session = Session("abc123", 42, "777", "host-a")
    for backend, expected in [("tensorrt", True), ("vllm", False)]:
        spec = RunSpec(run_id="001_x_c1", engine_cache_dir=str(engines),
                       config=ExperimentConfig(model="model-dir", backend=backend))
        container = plan_container(run_dir, spec, "llem/tensorrt:latest", "sha256:img", None,
                                   session, settings, gpu_ids=[0])
        mounts = {m.target: m for m in container.mounts}
        assert (str(engines) in mounts) is expected, backend
        if expected:
            assert mounts[str(engines)].source == str(engines)
            assert mounts[str(engines)].read_only is False


def test_a_prebuilt_tensorrt_engine_is_mounted_read_only(tmp_path):
    (tmp_path / "model-dir").mkdir()
    (tmp_path / "engine").mkdir()
    run_dir = tmp_path / "study" / "001_x_c1"
    run_dir.mkdir(parents=True)
    spec = RunSpec(run_id="001_x_c1", config=ExperimentConfig(
        model="model-dir", backend="tensorrt", tensorrt={"engine_dir": "engine"}))
    settings = MachineSettings(uid=1, gid=1, cwd=tmp_path, hf_cache=None, host_env={})
    container = plan_container(run_dir, spec, "llem/tensorrt:latest", "sha256:img", None,
                               Session("abc123", 42, "777", "host-a"), settings, gpu_ids=[0])
    mounts = {m.target: m for m in container.mounts}
    engine = str((tmp_path / "engine").resolve())
    assert mounts[engine].read_only is True and mounts[engine].source == engine


def test_a_local_lora_adapter_is_mounted_read_only(tmp_path):
    # The adapter is read from its host path inside the container, as a local model is.
    (tmp_path / "model-dir").mkdir()
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    run_dir = tmp_path / "study" / "001_x_c1"
    run_dir.mkdir(parents=True)
    spec = RunSpec(run_id="001_x_c1", config=ExperimentConfig(
        model="model-dir", backend="pytorch", lora={"adapter": str(adapter)}))
    settings = MachineSettings(uid=1, gid=1, cwd=tmp_path, hf_cache=None, host_env={})
    container = plan_container(run_dir, spec, "llem/cpu:latest", "sha256:img", None,
                               Session("abc123", 42, "777", "host-a"), settings, gpu_ids=None)
    mounts = {m.target: m for m in container.mounts}
    path = str(adapter.resolve())
    assert path in mounts and mounts[path].read_only is True and mounts[path].source == path


def test_only_the_boundary_talks_to_the_sdk():
    # api.py makes every SDK call; plan.py only builds the SDK's plain data types.
    root = Path(__file__).resolve().parents[3]
    importers = {}
    for path in [*(root / "orchestrator").rglob("*.py"), *(root / "harness").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.split(".")[0] in ("docker", "requests", "urllib3"):
                    importers.setdefault(str(path.relative_to(root)), set()).add(name)
    assert importers == {
        "orchestrator/runners/docker/api.py": {"docker", "docker.errors", "requests.exceptions",
                                               "urllib3.exceptions"},
        "orchestrator/runners/docker/plan.py": {"docker.types"},
    }


class Raising:
    """A client whose every call raises ``error``, as the SDK does when the engine is gone."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def ping(self):
        raise self.error

    def info(self):
        raise self.error


def test_sdk_and_transport_errors_become_typed_engine_errors():
    import docker.errors
    import requests.exceptions

    lost = requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected")
    with pytest.raises(EngineUnreachable, match="no answer from the Docker engine") as caught:
        Engine(Raising(lost)).ping()
    assert caught.value.__cause__ is lost and caught.value.fix
    with pytest.raises(NotFoundError):
        Engine(Raising(docker.errors.NotFound("no such container"))).info()
    refused = docker.errors.APIError("conflict", explanation="is not running")
    with pytest.raises(EngineError, match="is not running") as caught:
        Engine(Raising(refused)).info()
    assert not isinstance(caught.value, EngineUnreachable)


def test_a_local_model_run_reads_the_hosts_file_digests_read_only(tmp_path, monkeypatch):
    # Each run checks the model directory's digest; with the host's digest cache that is a
    # stat per file, without it every run in a fresh container would read every weight file.
    digests = tmp_path / "file-digests.json"
    digests.write_text("{}")
    monkeypatch.setenv("LLEM_DIGEST_CACHE", str(digests))
    container, _ = plan(tmp_path)
    mounts = {m.target: m for m in container.mounts}
    target = container.environment["LLEM_DIGEST_CACHE"]
    assert mounts[target].source == str(digests) and mounts[target].read_only is True
    hub, _ = plan(tmp_path, model="org/not-downloaded")
    assert "LLEM_DIGEST_CACHE" not in hub.environment
