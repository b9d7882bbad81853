"""Who owns a container: every container carries its orchestrator session in labels.

A container whose session is not alive is an orphan (its orchestrator was killed, or lost the
engine) and is removed by the next ``llem run`` or by ``llem clean``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from orchestrator.runners.docker.labels import (
    LABEL_HOST,
    LABEL_PID,
    LABEL_PID_START,
    LABEL_RUN,
    LABEL_SESSION,
    LABEL_STUDY,
)
from orchestrator.runners.session import Session

__all__ = ["LABEL_RUN", "LABEL_SESSION", "LABEL_STUDY", "Labelled", "Session", "orphans",
           "session_alive", "session_labels"]


class Labelled(Protocol):
    """Anything with Docker labels (a container as the engine lists it)."""

    @property
    def labels(self) -> dict[str, str]:
        """The container's labels."""
        ...


C = TypeVar("C", bound=Labelled)


def session_labels(session: Session) -> dict[str, str]:
    """Labels that identify ``session`` on a container."""
    return {LABEL_SESSION: session.id, LABEL_PID: str(session.pid),
            LABEL_PID_START: session.pid_start, LABEL_HOST: session.host}


def session_alive(labels: dict[str, str]) -> bool:
    """True when the session recorded in ``labels`` still runs (assumed so on another host)."""
    try:
        pid = int(labels.get(LABEL_PID, ""))
    except ValueError:
        return False
    return Session(labels.get(LABEL_SESSION, ""), pid, labels.get(LABEL_PID_START, ""),
                   labels.get(LABEL_HOST, "")).alive()


def orphans(containers: Iterable[C], current: Session | None = None,
                         study: str | None = None) -> list[C]:
    """Containers whose session is dead (never the current session's).

    Args:
        containers: llem containers as listed by the engine.
        current: this process's session, whose containers are never orphans.
        study: only containers of this study (label ``llem.study``), when given.
    """
    found = []
    for container in containers:
        labels = container.labels or {}
        if current is not None and labels.get(LABEL_SESSION) == current.id:
            continue
        if study is not None and labels.get(LABEL_STUDY) != study:
            continue
        if not session_alive(labels):
            found.append(container)
    return found
