"""Local runner: one subprocess per run on the host, same contract as a container.

The subprocess gets its own session (process group), so a Ctrl-C in the terminal reaches only
the orchestrator, which then stops the run gracefully (SIGTERM, then SIGKILL after a grace
period) and marks it interrupted.

A harness never outlives its orchestrator: on Linux the kernel kills it when the orchestrator
dies (``PR_SET_PDEATHSIG``), and every running harness is recorded in a registry under the
user's state directory, so ``llem clean`` and the next study find what a killed orchestrator
left (where the kernel guarantee is missing) and stop its process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.children import signalled_with_parent
from harness.errors import LlemError, PreflightError
from harness.io import write_json
from orchestrator.runners.base import (
    LOG_NAME,
    EndKind,
    EventCallback,
    EventFollower,
    ProcessEnd,
    Runner,
    RunOutcome,
    classify_end,
)
from orchestrator.runners.session import Session, live_group_members, pid_start

POLL_S = 0.2
GRACE_S = 10.0
RUN_MARK = "LLEM_RUN_DIR"
"""Environment variable naming a local harness's run directory (its children inherit it)."""

# Only these variables reach the harness; anything else in the host environment stays out.
ENV_ALLOW = (
    "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "HF_HOME", "HF_HUB_CACHE", "HF_TOKEN",
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "VIRTUAL_ENV", "PYTHONPATH",
)


class LocalRunner(Runner):
    """Runs each experiment as ``python -m harness run`` in a child process.

    Args:
        python: interpreter with the harness and backend libraries installed (default: this
            one).
        grace_s: time between SIGTERM and SIGKILL when a run is stopped.
    """

    name = "local"

    def __init__(self, python: str | None = None, grace_s: float = GRACE_S,
                 gpu_uuids: Callable[[list[int]], list[str]] | None = None) -> None:
        super().__init__()
        self.python = python or sys.executable
        self.grace_s = grace_s
        self._gpu_uuids = gpu_uuids or nvml_uuids
        self.session = Session.current()

    def startup(self) -> None:
        """Stop harness processes left running by orchestrators that are no longer alive."""
        clean_orphans(self.session)

    def harness_gpus(self, requested: list[int] | None) -> list[int] | None:
        """None: the child's CUDA view is restricted by UUID, and the harness maps it by UUID."""
        return None

    def preflight(self, backends: set[str] | None = None,
                  gpus: list[int] | None = None) -> list[str]:
        """GPU-only backends need an NVIDIA GPU here; ``execution.gpus`` must name real GPUs."""
        from harness.energy import discover_gpus
        from harness.schema.catalog import BY_NAME

        if gpus:
            try:
                self._gpu_uuids(gpus)
            except LlemError as error:
                return [str(error)]
        gpu_backends = sorted(b for b in backends or set() if BY_NAME[b].gpu_only)
        if not gpu_backends:
            return []
        machine = discover_gpus()
        found = len(machine)
        machine.close()
        if found:
            return []
        return [f"backend {', '.join(gpu_backends)} needs NVIDIA GPUs, but NVML finds none "
                "here\n  fix: run the study on a machine with NVIDIA GPUs and their driver, or "
                "run pytorch on cpu"]

    def run(self, run_dir: Path, timeout_s: float | None, on_event: EventCallback,
            gpus: list[int] | None = None) -> RunOutcome:
        """Start the harness on ``run_dir/experiment.json`` and wait for it."""
        log_path = run_dir / LOG_NAME
        follower = EventFollower(run_dir / "events.jsonl")
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [self.python, "-m", "harness", "run", str(run_dir / "experiment.json")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._environment(gpus, run_dir),
                start_new_session=True,
                preexec_fn=die_with_parent(),  # noqa: PLW1509 - async-signal-safe, see below
            )
            try:
                with registered(process, self.session, run_dir):
                    end = self._wait(process, timeout_s, follower, on_event)
            except BaseException:
                # A second Ctrl-C, a registry entry that cannot be written (a full disk) or
                # any crash here must not leave the harness running.
                _signal_group(process, signal.SIGKILL)
                process.wait()
                raise
        for event in follower.poll():
            on_event(event)
        return self._outcome(end, process.returncode, log_path, timeout_s)

    def _environment(self, gpus: list[int] | None = None,
                     run_dir: Path | None = None) -> dict[str, str]:
        env = {key: os.environ[key] for key in ENV_ALLOW if key in os.environ}
        if run_dir is not None:  # inherited by the harness's children: llem clean's proof
            env[RUN_MARK] = str(run_dir)
        env["HF_HUB_OFFLINE"] = "1"  # runs never download, whatever the host allows
        env["PYTHONUNBUFFERED"] = "1"
        # CUDA numbers GPUs fastest-first by default and NVML by PCI bus: make them agree, and
        # show the child only the selected GPUs, by UUID (indices would be renumbered).
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self._gpu_uuids(gpus))
        return env

    def _wait(
        self,
        process: subprocess.Popen[bytes],
        timeout_s: float | None,
        follower: EventFollower,
        on_event: EventCallback,
    ) -> EndKind | None:
        return self.supervise(lambda: process.poll() is None, lambda: self._stop(process),
                              timeout_s, follower, on_event, POLL_S)

    def _stop(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM the run's process group, SIGKILL it after the grace period."""
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=self.grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()

    def _outcome(
        self, end: EndKind | None, exit_code: int, log_path: Path, timeout_s: float | None
    ) -> RunOutcome:
        signalled = -exit_code if exit_code < 0 else None
        return classify_end(end, ProcessEnd(exit_code, signalled), log_path,
                            timeout_s=timeout_s, stop_note=self.stop_note)


def nvml_uuids(indices: list[int]) -> list[str]:
    """UUIDs of the GPUs at these NVML indices on this machine.

    Raises:
        PreflightError: an index names no GPU (or NVML finds none).
    """
    from harness.energy import discover_gpus

    gpus = discover_gpus(indices)
    try:
        if len(gpus) == 0:
            raise PreflightError(
                f"execution.gpus is {indices}, but NVML finds no NVIDIA GPU on this machine",
                fix="remove execution.gpus, or run on a machine with NVIDIA GPUs and drivers")
        return [gpu.info().uuid for gpu in gpus]
    finally:
        gpus.close()


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel SIGKILL the child when this process dies.

    ``prctl(PR_SET_PDEATHSIG)`` is resolved here, in the parent, so the child only makes one
    system call between fork and exec (no import, no lock of ours: safe beside other threads).
    The signal follows the death of the *thread* that started the child, which is the thread
    that waits for it here. None where the call does not exist (not Linux): ``llem clean``
    remains.
    """
    return signalled_with_parent(signal.SIGKILL)


def state_dir() -> Path:
    """Where llem keeps per-user state: ``$XDG_STATE_HOME/llem`` (``~/.local/state/llem``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "llem"


def registry_dir() -> Path:
    """One JSON file per running local harness (removed when its run ends)."""
    return state_dir() / "local-runs"


@contextlib.contextmanager
def registered(process: subprocess.Popen[bytes], session: Session,
               run_dir: Path) -> Iterator[None]:
    """Record ``process`` in the registry while the block runs."""
    path = registry_dir() / f"{process.pid}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = json.loads((run_dir / "experiment.json").read_text())
    write_json(path, {
        "pid": process.pid, "pid_start": pid_start(process.pid), "run_dir": str(run_dir),
        "study": spec.get("study"),
        "session": {"id": session.id, "pid": session.pid, "pid_start": session.pid_start,
                    "host": session.host},
    })
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def clean_orphans(current: Session | None = None, study: str | None = None) -> list[str]:
    """Stop harness processes of dead orchestrators; forget entries of ended ones.

    Args:
        current: this process's session, whose runs are never orphans.
        study: only runs of the study of this name, when given.

    Returns:
        The run directories whose harness was stopped.
    """
    stopped = []
    for path in sorted(registry_dir().glob("*.json")):
        entry = _read_entry(path)
        if entry is None or (study is not None and entry.get("study") != study):
            continue
        owner = Session(**entry["session"])
        if owner.alive() or (current is not None and owner.id == current.id):
            continue
        if _kill_group(int(entry["pid"]), entry["pid_start"], str(entry.get("run_dir"))):
            stopped.append(entry["run_dir"])
        path.unlink(missing_ok=True)
    return stopped


def _kill_group(pid: int, start: str | None, run_dir: str) -> bool:
    """SIGKILL what is left of the process group the harness ``pid`` led; False when nothing.

    The harness leads its own group, so its children (which the kernel's parent-death signal
    does not reach) go with it. While the harness lives (same pid, same start time) the whole
    group is its. Once the harness is gone, its pid may have been handed to another program
    that led a group of its own and exited (a daemon's double fork): then only the members
    that carry this run's mark in their environment (``RUN_MARK``, inherited from the
    harness) are killed. A live process with that pid but another start time proves the
    group empty (pid reused). Zombies (ended, not reaped) count as gone.
    """
    found = pid_start(pid)
    if found is not None and found != start:
        return False
    members = live_group_members(pid)
    if found is None:
        members = [member for member in members if _marked(member, run_dir)]
    killed = False
    for member in members:
        with contextlib.suppress(ProcessLookupError):  # ended meanwhile: what we wanted
            os.kill(member, signal.SIGKILL)
            killed = True
    return killed


def _marked(pid: int, run_dir: str) -> bool:
    """Whether process ``pid`` has ``RUN_MARK=run_dir`` in its environment (a harness's).

    A process in the middle of ``execve`` shows an empty environment for an instant: an empty
    one is read once more after a short pause before it counts as unmarked.
    """
    for attempt in range(2):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False  # gone, or another user's: not ours
        if environ or attempt:
            break
        time.sleep(0.05)
    return f"{RUN_MARK}={run_dir}".encode() in environ.split(b"\0")


def _read_entry(path: Path) -> dict[str, Any] | None:
    try:
        entry = json.loads(path.read_text())
        Session(**entry["session"])
        int(entry["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # written by another version, or removed meanwhile: not ours to judge
    return dict(entry)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
