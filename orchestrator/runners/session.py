"""This orchestrator process as the runs it starts record it, and whether it is still alive.

A session is alive while its process (pid, start time, host) is. The start time guards against
a recycled pid. Both runners record the session with what they start (Docker: container labels;
local: a registry entry), so ``llem clean`` and the next study can find what a killed
orchestrator left behind.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3 onwards of /proc/PID/stat (state first), None when no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after its closing paren are fixed.
    return stat.rsplit(")", 1)[1].split()


def pid_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat).

    Returns:
        The start time as text, or None when no such process exists (or no /proc).
    """
    fields = _stat_fields(pid)
    return None if fields is None else fields[19]


def process_alive(pid: int, start: str | None) -> bool:
    """True when ``pid`` runs and is the process that started at ``start`` (not a reused pid).

    A zombie (ended, not yet reaped by its parent) is not alive.
    """
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z" and fields[19] == start


def live_group_members(pgid: int) -> list[int]:
    """Pids of the processes in group ``pgid`` that have not ended (zombies left out)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[2] == str(pgid) and fields[0] != "Z":
            members.append(int(entry.name))
    return members


@dataclass(frozen=True)
class Session:
    """One orchestrator process.

    Attributes:
        id: random id of this session.
        pid: the orchestrator's process id.
        pid_start: its start time (see :func:`pid_start`).
        host: the host name it runs on.
    """

    id: str
    pid: int
    pid_start: str
    host: str

    @classmethod
    def current(cls) -> Session:
        """A new session for this process."""
        pid = os.getpid()
        return cls(uuid.uuid4().hex[:12], pid, pid_start(pid) or "unknown", socket.gethostname())

    def alive(self) -> bool:
        """True while the process runs (assumed so for another host's session)."""
        if self.host != socket.gethostname():
            return True  # another machine's session on a shared engine: not ours to judge
        return process_alive(self.pid, self.pid_start)
