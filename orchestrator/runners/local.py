"""Local runner: one subprocess per run on the host, same contract as a container.

The subprocess gets its own session (process group), so a Ctrl-C in the terminal reaches only
the orchestrator, which then stops the run gracefully (SIGTERM, then SIGKILL after a grace
period) and marks it interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from harness.errors import LlemError, PreflightError
from orchestrator.runners.base import (
    LOG_NAME,
    EndKind,
    EventCallback,
    EventFollower,
    Runner,
    RunOutcome,
    log_tail,
)

POLL_S = 0.2
GRACE_S = 10.0

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

    def harness_gpus(self, requested: list[int] | None) -> list[int] | None:
        """None: the child's CUDA view is restricted by UUID, and the harness maps it by UUID."""
        return None

    def preflight(self, backends: set[str] | None = None,
                  gpus: list[int] | None = None) -> list[str]:
        """GPU-only backends need an NVIDIA GPU here; ``execution.gpus`` must name real GPUs."""
        from harness.backends.catalog import BY_NAME
        from harness.energy import discover_gpus

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
                env=self._environment(gpus),
                start_new_session=True,
            )
            try:
                end = self._wait(process, timeout_s, follower, on_event)
            except BaseException:
                # A second Ctrl-C (or any crash here) must not leave the harness running.
                _signal_group(process, signal.SIGKILL)
                process.wait()
                raise
        for event in follower.poll():
            on_event(event)
        return self._outcome(end, process.returncode, log_path, timeout_s)

    def _environment(self, gpus: list[int] | None = None) -> dict[str, str]:
        env = {key: os.environ[key] for key in ENV_ALLOW if key in os.environ}
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
        tail = log_tail(log_path)
        if end == "timeout":
            return RunOutcome("timeout", None, f"exceeded its timeout of {timeout_s:g} s", tail)
        if end == "interrupted":
            return RunOutcome("interrupted", None, "stopped by the user", tail)
        if end == "stalled":
            return RunOutcome("stalled", None, self.stall_note, tail)
        if exit_code == 0:
            return RunOutcome("ok", 0)
        if exit_code < 0:
            name = signal.Signals(-exit_code).name
            return RunOutcome("killed", exit_code, f"harness killed by {name}", tail)
        return RunOutcome("error", exit_code, _last_error_line(tail, exit_code), tail)


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


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _last_error_line(tail: list[str], exit_code: int) -> str:
    for line in reversed(tail):
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return f"harness exited with status {exit_code}"
