"""Who owns a container: every container carries its orchestrator session in labels.

A session is alive while its process (pid, start time, host) is; a container whose session is
not alive is an orphan (its orchestrator was killed) and is removed by the next ``llem run`` or
by ``llem clean``. The pid start time guards against a recycled pid.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABEL_SESSION = "llem.session"
LABEL_PID = "llem.session.pid"
LABEL_PID_START = "llem.session.pid_start"
LABEL_HOST = "llem.session.host"
LABEL_STUDY = "llem.study"
LABEL_RUN = "llem.run"


def _pid_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after its closing paren are fixed.
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass(frozen=True)
class Session:
    """This orchestrator process, as recorded on the containers it starts."""

    id: str
    pid: int
    pid_start: str
    host: str

    @classmethod
    def current(cls) -> Session:
        """A new session for this process."""
        pid = os.getpid()
        return cls(uuid.uuid4().hex[:12], pid, _pid_start(pid) or "unknown", socket.gethostname())

    def labels(self) -> dict[str, str]:
        """Labels that identify this session on a container."""
        return {LABEL_SESSION: self.id, LABEL_PID: str(self.pid),
                LABEL_PID_START: self.pid_start, LABEL_HOST: self.host}


def session_alive(labels: dict[str, str], host: str | None = None) -> bool:
    """True when the session recorded in ``labels`` still runs (assumed so on another host)."""
    if labels.get(LABEL_HOST) != (host or socket.gethostname()):
        return True  # another machine's session on a shared engine: not ours to judge
    try:
        pid = int(labels.get(LABEL_PID, ""))
    except ValueError:
        return False
    start = _pid_start(pid)
    return start is not None and start == labels.get(LABEL_PID_START)


def orphans(containers: list[Any], current: Session | None = None) -> list[Any]:
    """Containers whose session is dead (never the current session's)."""
    found = []
    for container in containers:
        labels = container.labels or {}
        if current is not None and labels.get(LABEL_SESSION) == current.id:
            continue
        if not session_alive(labels):
            found.append(container)
    return found
