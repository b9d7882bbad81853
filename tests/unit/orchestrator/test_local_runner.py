"""The local runner: GPU selection by UUID in PCI bus order; no harness outlives its orchestrator.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from orchestrator.runners.local import LocalRunner, clean_orphans, registry_dir
from orchestrator.runners.session import Session, pid_start, process_alive

REPO = Path(__file__).resolve().parents[3]

UUIDS = {0: "GPU-aaaa", 1: "GPU-bbbb", 2: "GPU-cccc"}


def runner() -> LocalRunner:
    return LocalRunner(gpu_uuids=lambda indices: [UUIDS[i] for i in indices])


def test_selected_gpus_reach_the_child_by_uuid_in_pci_order(monkeypatch):
    # Before: execution.gpus [1] measured NVML GPU 1 while the child computed on CUDA device 0
    # (its view was never restricted and CUDA_DEVICE_ORDER was dropped).
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    env = runner()._environment([1])
    assert env["CUDA_VISIBLE_DEVICES"] == "GPU-bbbb"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert runner().harness_gpus([1]) is None  # the harness maps by UUID, not by index


def test_without_a_selection_the_child_keeps_the_users_view(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    env = runner()._environment(None)
    assert env["CUDA_VISIBLE_DEVICES"] == "2"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_preflight_names_a_selection_that_does_not_exist():
    def no_gpus(indices):
        from harness.errors import PreflightError

        raise PreflightError(f"execution.gpus is {indices}, but NVML finds no NVIDIA GPU",
                             fix="remove execution.gpus")

    problems = LocalRunner(gpu_uuids=no_gpus).preflight({"pytorch"}, [3])
    assert problems and "execution.gpus is [3]" in problems[0]


def test_runs_stay_offline_whatever_the_host_allows(monkeypatch):
    # The host may be online to fetch models; the harness it starts never downloads.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert runner()._environment(None)["HF_HUB_OFFLINE"] == "1"


def sleeper() -> subprocess.Popen[bytes]:
    """A process standing in for a harness: it leads its own process group, like the real one."""
    return subprocess.Popen(["sleep", "300"], start_new_session=True)


def gone(pid: int, start: str | None, limit_s: float = 60.0) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if not process_alive(pid, start):
            return True
        time.sleep(0.05)
    return False


def register(process: subprocess.Popen[bytes], owner: Session, study: str) -> None:
    registry_dir().mkdir(parents=True, exist_ok=True)
    (registry_dir() / f"{process.pid}.json").write_text(json.dumps({
        "pid": process.pid, "pid_start": pid_start(process.pid), "run_dir": f"/r/{study}/001",
        "study": study, "session": asdict(owner)}))


@pytest.fixture
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def test_clean_stops_the_harness_of_a_dead_orchestrator_and_keeps_live_ones(state_home):
    dead = Session("dead", 999_999_999, "1", socket.gethostname())
    alive = Session.current()
    orphan, kept, other_study = sleeper(), sleeper(), sleeper()
    try:
        register(orphan, dead, "s")
        register(kept, alive, "s")
        register(other_study, dead, "other")
        assert clean_orphans(study="s") == ["/r/s/001"]
        assert orphan.wait(timeout=60) == -signal.SIGKILL
        assert kept.poll() is None and other_study.poll() is None
        assert sorted(p.name for p in registry_dir().iterdir()) == sorted(
            [f"{kept.pid}.json", f"{other_study.pid}.json"])
    finally:
        for process in (orphan, kept, other_study):
            process.kill()
            process.wait()


def test_an_entry_whose_harness_and_group_ended_is_just_forgotten(state_home):
    ended = sleeper()
    register(ended, Session("dead", 999_999_999, "1", socket.gethostname()), "s")
    ended.kill()
    ended.wait()
    assert clean_orphans() == []
    assert list(registry_dir().iterdir()) == []


def test_clean_stops_what_is_left_of_the_group_after_the_harness_died(state_home):
    # The harness (here sh) leads its group; a child of its own (here sleep) outlives it, as a
    # vLLM worker would outlive a harness killed by the parent-death signal.
    # The local runner marks the harness's environment with its run dir; children inherit it.
    harness = subprocess.Popen(["sh", "-c", "sleep 300 & echo $!; wait"], start_new_session=True,
                               stdout=subprocess.PIPE,
                               env={**os.environ, "LLEM_RUN_DIR": "/r/s/001"})
    assert harness.stdout is not None
    worker = int(harness.stdout.readline())
    # Until sleep has replaced the forked shell, its environment can read empty (mid-exec).
    deadline = time.monotonic() + 60
    while Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    worker_start = pid_start(worker)
    register(harness, Session("dead", 999_999_999, "1", socket.gethostname()), "s")
    harness.kill()
    harness.wait()
    try:
        assert clean_orphans() == ["/r/s/001"]
        assert gone(worker, worker_start)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)


def test_the_child_dies_with_the_process_that_started_it():
    # A middle process starts a child with die_with_parent(), prints its pid, then blocks; we
    # SIGKILL the middle one (no cleanup code can run) and the kernel must kill the child.
    script = (
        "import subprocess, sys, time\n"
        "from orchestrator.runners.local import die_with_parent\n"
        "child = subprocess.Popen(['sleep', '300'], preexec_fn=die_with_parent())\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(300)\n")
    middle = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert middle.stdout is not None
    child = int(middle.stdout.readline())
    start = pid_start(child)
    assert start is not None
    middle.kill()
    middle.wait()
    assert gone(child, start)


def test_a_harness_is_stopped_when_its_registry_entry_cannot_be_written(state_home, tmp_path,
                                                                         monkeypatch):
    # The registry write can fail (a full disk, a read-only state directory) after the harness
    # started: the run fails, and the harness must not keep running, unrecorded, beside it.
    import errno

    import orchestrator.runners.local as local

    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\nexec sleep 300\n")
    fake_python.chmod(0o755)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "experiment.json").write_text(json.dumps({"study": "s"}))
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        process = real_popen(*args, **kwargs)
        started.append(process)
        return process

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local.subprocess, "Popen", recording_popen)
    monkeypatch.setattr(local, "write_json", disk_full)
    try:
        with pytest.raises(OSError):
            LocalRunner(python=str(fake_python)).run(run_dir, None, lambda event: None)
        (process,) = started
        assert process.poll() is not None, "the harness still runs after its run failed"
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_clean_leaves_alone_a_group_that_a_reused_pid_made_after_the_harness_ended(state_home):
    # The registry entry outlived its harness and its whole group (the orchestrator was
    # killed before it could remove the entry). The pid was then handed to an unrelated
    # program that daemonised: it led a new group, forked, and exited, so no process has the
    # pid but a live group carries it. That group is not the harness's, whatever its id.
    daemon_leader = subprocess.Popen(
        ["sh", "-c", "sleep 300 & echo $!"], start_new_session=True, stdout=subprocess.PIPE)
    assert daemon_leader.stdout is not None
    daemon = int(daemon_leader.stdout.readline())
    daemon_start = pid_start(daemon)
    daemon_leader.wait()
    try:
        dead = Session("dead", 999_999_999, "1", socket.gethostname())
        registry_dir().mkdir(parents=True, exist_ok=True)
        harness_start = "1"  # the ended harness started long before the daemon
        (registry_dir() / f"{daemon_leader.pid}.json").write_text(json.dumps({
            "pid": daemon_leader.pid, "pid_start": harness_start, "run_dir": "/r/s/001",
            "study": "s", "session": asdict(dead)}))
        assert clean_orphans() == []
        assert process_alive(daemon, daemon_start), "llem clean killed an unrelated process"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signal.SIGKILL)
