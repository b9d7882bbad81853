"""Losing the Docker engine mid-run: the run fails with the reason, the study stops with its
summary, and the container left behind is removed by the next `llem clean`.

The engine is "lost" by cutting a socket proxy that stands between llem and the real engine
(DOCKER_HOST points at the proxy), never by stopping the machine's shared daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from orchestrator.manifest import Manifest
from orchestrator.runners.docker.labels import LABEL_SESSION, LABEL_STUDY
from orchestrator.summary import StudyResult

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LLEM = str(Path(sys.executable).with_name("llem"))
ENGINE_SOCKET = "/var/run/docker.sock"


class SocketProxy:
    """Forwards connections on a unix socket to the Docker engine's socket, until cut."""

    def __init__(self, path: Path, target: str = ENGINE_SOCKET) -> None:
        self.path, self.target = path, target
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(64)
        self.server.settimeout(0.2)
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        self.cut_done = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.cut_done.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self.lock:
                if self.cut_done.is_set():
                    client.close()
                    upstream.close()
                    return
                self.open += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the other side (or the cut) closed the connection

    def cut(self) -> None:
        """Close the listening socket and every open connection: the engine is gone."""
        with self.lock:
            self.cut_done.set()
            self.server.close()
            self.path.unlink(missing_ok=True)
            for connection in self.open:
                with contextlib.suppress(OSError):  # already closed by its peer
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()


def containers_of(engine, study: str) -> list:
    return [c for c in engine.containers(LABEL_SESSION) if c.labels.get(LABEL_STUDY) == study]


def warming(output: Path) -> bool:
    events = list(output.glob("*/001_*/events.jsonl"))
    return bool(events) and '"warmup"' in events[0].read_text()


def wait_for(condition, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return False


def test_engine_lost_mid_run_fails_the_run_stops_the_study_and_clean_removes_the_container(
        cpu_image, tiny_model_dir, tmp_path, engine):
    name = f"lost-{uuid.uuid4().hex[:8]}"
    entries = [{"warmup": {"n_warmup": 1, "min_seconds": 300, "max_seconds": 600}},
               {"pytorch": {"batch_size": 2}}]
    study = tmp_path / "s.yaml"
    study.write_text(
        f"name: {name}\nmodel: {tiny_model_dir}\nbackend: pytorch\nprecision: fp32\nn: 4\n"
        "input_len: 16\noutput_len: 8\nexecution: {config_gap_s: 0}\nexperiments:\n"
        + "".join(f"  - {json.dumps(e)}\n" for e in entries))
    proxy = SocketProxy(tmp_path / "engine.sock")
    env = {**os.environ, "DOCKER_HOST": f"unix://{proxy.path}"}
    process = subprocess.Popen([LLEM, "run", str(study), "--runner", "docker", "--output", "o",
                                "-q"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: warming(tmp_path / "o"), 300), "the run never reached warmup"
        (running,) = containers_of(engine, name)
        assert running.status == "running"
        host = engine.client.api.inspect_container(running.id)["HostConfig"]
        assert host["ReadonlyRootfs"] is True and host["PidsLimit"] > 0  # and yet it runs
        proxy.cut()
        stdout, stderr = process.communicate(timeout=120)
    finally:
        proxy.cut()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, stderr[-2000:]  # a run failed (docs/runners.md)
    assert "Traceback" not in stderr
    (study_dir,) = (tmp_path / "o").iterdir()
    runs = Manifest.load(study_dir).runs
    assert [r.status for r in runs] == ["failed", "pending"]
    assert runs[0].failure is not None and runs[0].failure.cause == "error"
    assert runs[0].failure.message.startswith("Docker engine lost: ")
    assert "Docker engine lost" in (study_dir / runs[0].run_id / "container.log").read_text()
    summary = StudyResult.model_validate_json((study_dir / "summary.json").read_text())
    assert summary.counts == {"failed": 1, "pending": 1} and not summary.interrupted
    # The container outlived the cut (the engine itself never stopped); its session is dead.
    assert len(containers_of(engine, name)) == 1
    real = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    cleaned = subprocess.run([LLEM, "clean", "--study", name], env=real, capture_output=True,
                             text=True, timeout=120, check=False)
    assert cleaned.returncode == 0, cleaned.stderr
    assert "removed 1 orphaned container" in cleaned.stdout
    assert containers_of(engine, name) == []
