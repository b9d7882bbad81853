"""The runner interface: start one run directory's experiment, wait, classify the end.

A runner never interprets the experiment: it starts ``python -m harness run
<run-dir>/experiment.json`` in some isolation primitive and reports how that ended.
"""

from __future__ import annotations

import abc
import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

EndKind = Literal["ok", "error", "oom", "killed", "timeout", "interrupted"]
EventCallback = Callable[[dict[str, Any]], None]

LOG_NAME = "container.log"
"""The run's captured stdout and stderr, whatever the runner (SPEC file name)."""

LOG_TAIL_LINES = 20


@dataclass
class RunOutcome:
    """How a run ended.

    Attributes:
        end: ok | error | oom | killed | timeout | interrupted.
        exit_code: the harness process's exit status, None if it never exited by itself.
        message: one line for the manifest.
        log_tail: the last lines of the run's log, for the failure record.
        fatal: the runner can start no further run (e.g. the Docker engine is gone): the
            study records this run and stops, leaving the rest pending for --resume.
    """

    end: EndKind
    exit_code: int | None
    message: str = ""
    log_tail: list[str] = field(default_factory=list)
    fatal: bool = False


class Runner(abc.ABC):
    """Starts experiments; one implementation per isolation primitive."""

    name: str = ""

    def __init__(self) -> None:
        self.stop_requested = threading.Event()

    def preflight(self, backends: set[str] | None = None,
                  gpus: list[int] | None = None) -> list[str]:
        """Problems that stop this runner from serving these backends here (with the fix)."""
        return []

    def harness_gpus(self, requested: list[int] | None) -> list[int] | None:
        """GPU indices as the harness will see them (``experiment.json``'s ``gpus``)."""
        return requested

    def startup(self) -> None:  # noqa: B027 - optional hook
        """Called once before a study's first run (e.g. orphan cleanup)."""

    @abc.abstractmethod
    def run(self, run_dir: Path, timeout_s: float | None, on_event: EventCallback,
            gpus: list[int] | None = None) -> RunOutcome:
        """Run ``run_dir/experiment.json`` to its end and classify it.

        Args:
            run_dir: the run directory holding experiment.json.
            timeout_s: wall-clock limit; the run is stopped and classified ``timeout`` past it.
            on_event: receives every event the harness appends to events.jsonl.
            gpus: host GPU indices the run may use (None: all).
        """

    def request_stop(self) -> None:
        """Ask the running experiment to stop (first Ctrl-C): graceful, then killed."""
        self.stop_requested.set()

    def supervise(
        self,
        running: Callable[[], bool],
        stop: Callable[[], None],
        timeout_s: float | None,
        follower: EventFollower,
        on_event: EventCallback,
        poll_s: float = 0.25,
    ) -> EndKind | None:
        """Follow a run until it ends by itself (None), or stop it for a timeout or the user.

        The wall-clock timeout is enforced here, by the orchestrator, whatever the isolation
        primitive: neither a subprocess nor the Docker SDK's wait enforces one on its own.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while running():
            for event in follower.poll():
                on_event(event)
            if self.stop_requested.is_set():
                stop()
                return "interrupted"
            if deadline is not None and time.monotonic() > deadline:
                stop()
                return "timeout"
            time.sleep(poll_s)
        return None


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """Last ``lines`` lines of a log file (empty when missing)."""
    if not path.exists():
        return []
    return path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]


class EventFollower:
    """Yields events appended to ``events.jsonl`` since the last poll.

    Reads only the bytes added since the previous poll and keeps an incomplete last line for
    the next one, so following a long run costs O(new bytes) per poll.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[dict[str, Any]]:
        """New complete events since the previous call."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        events: list[dict[str, Any]] = []
        for line in lines:
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events
